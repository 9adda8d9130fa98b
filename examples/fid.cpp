// Compares two sets of Fashion-MNIST-like images with domain metrics: the
// Frechet distance (FID), the kernel distance (KID), precision and recall,
// all on the features of the committed Fashion-MNIST classifier. It also
// prints the mode coverage of SOURCE_B: the share of the 10 classes that the
// classifier finds among its images, the share of the rarest class, and the
// KL divergence of B's class histogram from A's.
//
//   fid /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz out/generator.safetensors
//
// These values are domain metrics: they rank generators of this dataset,
// but they are not comparable with FID or KID computed on InceptionV3
// features, as papers report them. With --features inception
// --inception-weights FILE, FID, KID, precision and recall use the 2048
// pool features of the FID InceptionV3 instead, with images resized to
// 299 x 299 and grayscale repeated to three channels. Mode coverage still
// uses the classifier.
//
// A source is one of three kinds:
// - an IDX file of uint8 images, N x 28 x 28 or N x 32 x 32, plain or
//   gzip-compressed;
// - a folder of grayscale PNG files that all have one size, 28 x 28 or
//   32 x 32;
// - a generator written by dcgan_fashion_mnist (safetensors), from which
//   --count samples are drawn.
// SOURCE_A is the reference set: precision is the share of B's samples
// inside A's manifold, and recall the share of A's inside B's. Any error ends
// the program with a message and exit status 1. Run with --help for the
// options.

#include <algorithm>   // std::sort, std::min
#include <cstdint>     // std::uint8_t, std::uint64_t
#include <cstdio>      // std::printf, std::fprintf
#include <exception>   // std::exception
#include <filesystem>  // std::filesystem
#include <fstream>     // std::ifstream
#include <optional>    // std::optional
#include <string>      // std::string
#include <vector>      // std::vector

#include <nlohmann/json.hpp>

#include <advgan/advgan.hpp>
#include <advgan/metrics/domain.hpp>
#include <advgan/metrics/inception.hpp>
#include <advgan/metrics/metrics.hpp>

#include "classifier_model.hpp"
#include "command_line.hpp"
#include "dcgan_models.hpp"

namespace {

using namespace advgan;
namespace fs = std::filesystem;

constexpr std::size_t default_generator_count = 10000;
constexpr std::size_t max_count = 1000000;

struct options {
  bool json = false;
  std::string features = "classifier";
  fs::path classifier = classifier_tools::default_classifier_file();
  std::optional<fs::path> inception_weights;
  std::optional<std::size_t> count;
  std::uint64_t seed = 0;
  int threads = 2;
  std::string source_a;
  std::string source_b;
};

constexpr const char* usage =
    "usage: fid [options] SOURCE_A SOURCE_B\n"
    "  SOURCE           an IDX file of uint8 images (N x 28 x 28 or N x 32 x 32, plain\n"
    "                   or .gz), a folder of grayscale PNG files of one size (28 x 28\n"
    "                   or 32 x 32), or a generator file written by dcgan_fashion_mnist\n"
    "  --json           print one JSON object with keys features, fid, kid, kid_std,\n"
    "                   precision, recall, mode_coverage, min_class_share, mode_kl\n"
    "  --features NAME  features of fid, kid, precision and recall: \"classifier\"\n"
    "                   (the default, domain metrics) or \"inception\" (the FID\n"
    "                   InceptionV3 at 299 x 299, far slower; needs\n"
    "                   --inception-weights)\n"
    "  --classifier FILE  classifier weights (default the committed\n"
    "                   examples/weights/fashion_mnist_classifier.safetensors)\n"
    "  --inception-weights FILE  InceptionV3 weights converted by\n"
    "                   scripts/convert_inception_weights.py\n"
    "  --count N        images per source: the first N of a file or folder (default\n"
    "                   all), or N generator samples (default 10000)\n"
    "  --seed N         seed of the generator samples and the KID subsets (default 0)\n"
    "  --threads N      threads for OpenMP and OpenBLAS (default 2)\n";

options parse_options(int argc, char** argv) {
  options parsed;
  std::vector<std::string> sources;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf("%s", usage);
      std::exit(0);
    }
    if (flag == "--json") {
      parsed.json = true;
      continue;
    }
    if (flag.size() < 2 || flag.compare(0, 2, "--") != 0) {
      sources.push_back(flag);
      continue;
    }
    if (i + 1 >= argc) throw argument_error(detail::concat(flag, ": missing value\n", usage));
    const std::string value = argv[++i];
    if (flag == "--features")
      parsed.features = value;
    else if (flag == "--classifier")
      parsed.classifier = value;
    else if (flag == "--inception-weights")
      parsed.inception_weights = value;
    else if (flag == "--count")
      parsed.count = command_line::parse_unsigned(flag, value);
    else if (flag == "--seed")
      parsed.seed = command_line::parse_unsigned(flag, value);
    else if (flag == "--threads")
      parsed.threads = static_cast<int>(command_line::parse_unsigned(flag, value));
    else
      throw argument_error(detail::concat("unknown option ", flag, "\n", usage));
  }
  if (parsed.features != "classifier" && parsed.features != "inception") {
    throw argument_error(detail::concat("--features: unknown extractor \"", parsed.features,
                                        "\"; accepted names: classifier, inception"));
  }
  if (parsed.features == "inception" && !parsed.inception_weights) {
    throw argument_error(
        "--features inception needs --inception-weights FILE, the InceptionV3 weights "
        "converted by scripts/convert_inception_weights.py");
  }
  if (parsed.features != "inception" && parsed.inception_weights) {
    throw argument_error("--inception-weights is only used with --features inception");
  }
  if (sources.size() != 2) {
    throw argument_error(detail::concat("expected two sources, got ", sources.size(), "\n", usage));
  }
  // The upper bound is the generate tool's, and it keeps the float images of
  // a generator source (4 KiB each) under 4.1 GB.
  if (parsed.count && (*parsed.count < 2 || *parsed.count > max_count)) {
    throw argument_error(
        detail::concat("--count: expected 2 to ", max_count, ", got ", *parsed.count));
  }
  parsed.source_a = sources[0];
  parsed.source_b = sources[1];
  return parsed;
}

bool supported_size(std::size_t height, std::size_t width) {
  return (height == 28 && width == 28) || (height == 32 && width == 32);
}

/// 8-bit grayscale images of one size, row-major.
struct byte_images {
  std::size_t count = 0, height = 0, width = 0;
  std::vector<std::uint8_t> pixels;
};

/// Keeps the first `count` images; throws if there are fewer.
void take_first(byte_images& images, std::size_t count, const std::string& source) {
  if (count > images.count) {
    throw argument_error(detail::concat(source, ": --count ", count, " exceeds the ", images.count,
                                        " images it contains"));
  }
  images.count = count;
  images.pixels.resize(count * images.height * images.width);
}

byte_images read_idx_source(const std::string& path, std::optional<std::size_t> count) {
  std::vector<std::size_t> dims;
  byte_images images;
  images.pixels = data::read_idx_u8(path, 3, dims);
  images.count = dims[0];
  images.height = dims[1];
  images.width = dims[2];
  if (!supported_size(images.height, images.width)) {
    throw file_error(path, "dimensions",
                     detail::concat("images of ", images.height, " x ", images.width,
                                    " pixels; expected 28 x 28 or 32 x 32"),
                     4);
  }
  if (count) take_first(images, *count, path);
  return images;
}

/// Reads every file of `folder` in name order (the first `count` when
/// given) as a grayscale PNG; all must have one supported size.
byte_images read_png_folder(const fs::path& folder, std::optional<std::size_t> count) {
  std::vector<fs::path> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(folder)) {
    files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw file_error(folder.string(), "", "the folder contains no PNG files");
  if (count) {
    if (*count > files.size()) {
      throw argument_error(detail::concat(folder.string(), ": --count ", *count, " exceeds the ",
                                          files.size(), " files it contains"));
    }
    files.resize(*count);
  }

  byte_images images;
  fs::path first;
  for (const fs::path& file : files) {
    if (!fs::is_regular_file(file))
      throw file_error(file.string(), "",
                       "not a regular file; the folder must contain PNG files only");
    const io::png_image image = io::read_png(file);
    if (image.channels != 1) {
      throw file_error(file.string(), "color type",
                       detail::concat(image.channels, " channels; expected a grayscale PNG"));
    }
    if (images.count == 0) {
      if (!supported_size(image.height, image.width)) {
        throw file_error(file.string(), "size",
                         detail::concat(image.width, " x ", image.height,
                                        " pixels; expected 28 x 28 or 32 x 32"));
      }
      first = file;
      images.height = image.height;
      images.width = image.width;
    } else if (image.height != images.height || image.width != images.width) {
      throw file_error(
          file.string(), "size",
          detail::concat(image.width, " x ", image.height, " pixels, but ", first.string(), " has ",
                         images.width, " x ", images.height, "; all images must have one size"));
    }
    images.pixels.insert(images.pixels.end(), image.pixels.begin(), image.pixels.end());
    ++images.count;
  }
  return images;
}

template <std::size_t Width>
std::vector<float> generate_samples(const io::safetensors& file, std::size_t count,
                                    std::uint64_t seed) {
  auto generator = std::make_unique<model<dcgan::generator<Width>, cpu<float>>>();
  load_model(file, "", *generator);
  generator->eval();
  philox noise(seed);
  std::vector<float> samples;
  cpu<float>::tensor latent;
  constexpr std::size_t chunk = 250;  // bounds the activations' memory
  for (std::size_t done = 0; done < count; done += chunk) {
    const std::size_t batch = std::min(chunk, count - done);
    cpu<float>::resize(latent, batch, 100, 1, 1);
    cpu<float>::fill_normal(latent.data(), latent.size(), noise, 0, 1);
    const cpu<float>::tensor& images = generator->forward(latent);
    const std::size_t bad = cpu<float>::first_non_finite(images.data(), images.size());
    if (bad < images.size()) {
      throw numeric_error(file.source(), 0, "generated images", done * 32 * 32 + bad,
                          images.data()[bad]);
    }
    samples.insert(samples.end(), images.data(), images.data() + images.size());
  }
  return samples;
}

/// Draws `count` samples from a generator file of either demo width.
std::vector<float> read_generator_source(const std::string& path, std::size_t count,
                                         std::uint64_t seed) {
  const io::safetensors file = io::safetensors::load(path);
  // The first layer's weight is (100, 4 * Width, 4, 4), which gives the width.
  const io::tensor_data& first = file.at("0.weight");
  const std::size_t width = first.shape.size() == 4 ? first.shape[1] / 4 : 0;
  if (width == dcgan::small_width) return generate_samples<dcgan::small_width>(file, count, seed);
  if (width == dcgan::reference_width)
    return generate_samples<dcgan::reference_width>(file, count, seed);
  throw file_error(path, "0.weight",
                   detail::concat("shape ", io::detail::shape_text(first.shape),
                                  " is not the first layer of a known DCGAN generator "
                                  "(expected (100, 128, 4, 4) or (100, 512, 4, 4))"));
}

enum class source_kind { idx, png_folder, generator };

/// Tells the kind of a source from its first bytes: gzip data or 00 00 for
/// IDX, an 8-byte length and "{" for safetensors.
source_kind detect_kind(const std::string& path) {
  if (!fs::exists(path)) throw file_error(path, "", "not found");
  if (fs::is_directory(path)) return source_kind::png_folder;
  std::ifstream file(path, std::ios::binary);
  if (!file) throw file_error(path, "", "cannot open the file for reading");
  unsigned char head[9] = {};
  file.read(reinterpret_cast<char*>(head), sizeof head);
  const std::size_t size = static_cast<std::size_t>(file.gcount());
  if (size >= 2 && ((head[0] == 0x1F && head[1] == 0x8B) || (head[0] == 0 && head[1] == 0)))
    return source_kind::idx;
  if (size == sizeof head && head[8] == '{') return source_kind::generator;
  throw file_error(path, "",
                   "neither an IDX file (plain or gzip), a safetensors generator "
                   "nor a folder of PNG files");
}

/// The images of one source: 8-bit images from a file or folder, or the
/// 1 x 32 x 32 samples in [-1, 1] of a generator.
struct source_images {
  byte_images bytes;
  std::vector<float> samples;
  bool generated = false;
};

source_images read_source(const std::string& path, const options& opts) {
  source_images images;
  switch (detect_kind(path)) {
    case source_kind::idx:
      images.bytes = read_idx_source(path, opts.count);
      break;
    case source_kind::png_folder:
      images.bytes = read_png_folder(path, opts.count);
      break;
    default:
      images.samples =
          read_generator_source(path, opts.count.value_or(default_generator_count), opts.seed);
      images.generated = true;
  }
  return images;
}

domain_feature_set classifier_features(domain_features& extractor, const source_images& images) {
  if (images.generated) return extractor.extract(std::span<const float>(images.samples));
  return extractor.extract(std::span<const std::uint8_t>(images.bytes.pixels), images.bytes.height,
                           images.bytes.width);
}

feature_matrix pool_features(inception_features& extractor, const source_images& images) {
  if (images.generated) return extractor.extract(std::span<const float>(images.samples), 1, 32, 32);
  return extractor.extract(std::span<const std::uint8_t>(images.bytes.pixels), images.bytes.height,
                           images.bytes.width);
}

void run(const options& opts) {
  set_threads(opts.threads);
  if (!fs::exists(opts.classifier)) {
    throw file_error(opts.classifier.string(), "",
                     "classifier weights not found; pass --classifier FILE");
  }
  domain_features extractor(opts.classifier);
  std::unique_ptr<inception_features> inception;
  if (opts.inception_weights) {
    if (!fs::exists(*opts.inception_weights)) {
      throw file_error(opts.inception_weights->string(), "",
                       "InceptionV3 weights not found; convert them with "
                       "scripts/convert_inception_weights.py and pass --inception-weights FILE");
    }
    inception = std::make_unique<inception_features>(*opts.inception_weights);
  }
  const source_images images_a = read_source(opts.source_a, opts);
  const source_images images_b = read_source(opts.source_b, opts);
  const domain_feature_set a = classifier_features(extractor, images_a);
  const domain_feature_set b = classifier_features(extractor, images_b);
  // The features of the distances: the classifier's, or InceptionV3's.
  const feature_matrix features_a = inception ? pool_features(*inception, images_a) : a.features;
  const feature_matrix features_b = inception ? pool_features(*inception, images_b) : b.features;

  const frechet_result fid = frechet_distance(features_a, features_b);
  for (const std::string& warning : fid.warnings)
    std::fprintf(stderr, "fid: warning: %s\n", warning.c_str());
  kid_options kid_settings;
  kid_settings.subset_size = std::min<std::size_t>({1000, features_a.rows, features_b.rows});
  kid_settings.seed = opts.seed;
  const kid_result kid = kernel_inception_distance(features_a, features_b, kid_settings);
  const precision_recall_result manifold = precision_recall(features_a, features_b);
  const mode_coverage_result modes = mode_coverage(b.probabilities, a.probabilities);

  if (opts.json) {
    const nlohmann::json result = {{"features", opts.features},
                                   {"fid", fid.value},
                                   {"kid", kid.mean},
                                   {"kid_std", kid.stddev},
                                   {"precision", manifold.precision},
                                   {"recall", manifold.recall},
                                   {"mode_coverage", modes.coverage},
                                   {"min_class_share", modes.min_class_share},
                                   {"mode_kl", modes.kl_divergence}};
    std::printf("%s\n", result.dump().c_str());
    return;
  }
  std::printf("features   %s\n", opts.features.c_str());
  std::printf("fid        %.6g\n", fid.value);
  std::printf("kid        %.6g +- %.2g\n", kid.mean, kid.stddev);
  std::printf("precision  %.4f\n", manifold.precision);
  std::printf("recall     %.4f\n", manifold.recall);
  std::printf("modes      %.2f (smallest class %.1f%%, KL %.4f)\n", modes.coverage,
              100 * modes.min_class_share, modes.kl_divergence);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    run(parse_options(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fid: %s\n", e.what());
    return 1;
  }
  return 0;
}

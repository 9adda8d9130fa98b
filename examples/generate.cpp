// Generates images from a trained generator file, as an application that
// embeds a generator would.
//
//   generate --generator out/generator.safetensors --count 64 --out samples.png
//
// With --out ending in .idx, writes the samples as a uint8 IDX file of
// 28x28 images (the 2-pixel padding removed), which other tools can score.
// A file that is not a generator of the demo's architecture ends the
// program with a message and exit status 1.

#include <cmath>      // std::lround
#include <cstdio>     // std::fprintf
#include <exception>  // std::exception
#include <string>     // std::string
#include <vector>     // std::vector

#include <advgan/advgan.hpp>

#include "dcgan_models.hpp"

namespace {

using namespace advgan;

struct options {
  std::string generator;
  std::size_t count = 64;
  std::uint64_t seed = 0;
  std::string out = "samples.png";
  std::string latent;        // read the noise from this file instead of drawing it
  std::string save_tensors;  // write the noise and the images to this file
};

constexpr const char* usage =
    "usage: generate --generator FILE [--count N] [--seed N] [--out FILE.png|FILE.idx]\n"
    "  --generator FILE  a generator written by dcgan_fashion_mnist (safetensors)\n"
    "  --count N         number of images (default 64)\n"
    "  --seed N          seed of the noise (default 0)\n"
    "  --out FILE        a PNG grid, or with .idx a uint8 IDX file of 28x28 images\n"
    "                    (default samples.png)\n"
    "  --latent FILE     take the noise from tensor \"latent\" (N, 100, 1, 1) of a\n"
    "                    safetensors file; N replaces --count\n"
    "  --save-tensors FILE  also write tensors \"latent\" and \"images\" to FILE\n";

options parse_options(int argc, char** argv) {
  options parsed;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf("%s", usage);
      std::exit(0);
    }
    if (i + 1 >= argc) throw argument_error(detail::concat(flag, ": missing value\n", usage));
    const std::string value = argv[++i];
    if (flag == "--generator") parsed.generator = value;
    else if (flag == "--count") parsed.count = std::stoull(value);
    else if (flag == "--seed") parsed.seed = std::stoull(value);
    else if (flag == "--out") parsed.out = value;
    else if (flag == "--latent") parsed.latent = value;
    else if (flag == "--save-tensors") parsed.save_tensors = value;
    else throw argument_error(detail::concat("unknown option ", flag, "\n", usage));
  }
  if (parsed.generator.empty()) throw argument_error(detail::concat("--generator is required\n", usage));
  if (parsed.count == 0 || parsed.count > 1'000'000)
    throw argument_error(detail::concat("--count: expected 1 to 1000000, got ", parsed.count));
  return parsed;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// Writes 32x32 samples in [-1, 1] as 28x28 uint8 images, cropping the
/// padding that the training data had.
void write_idx(const std::string& path, const std::vector<float>& samples, std::size_t count) {
  std::vector<std::uint8_t> pixels(count * 28 * 28);
  for (std::size_t n = 0; n < count; ++n)
    for (std::size_t y = 0; y < 28; ++y)
      for (std::size_t x = 0; x < 28; ++x) {
        const double value = samples[(n * 32 + y + 2) * 32 + x + 2];
        const double scaled = std::min(255.0, std::max(0.0, (value + 1.0) * 127.5));
        pixels[(n * 28 + y) * 28 + x] = static_cast<std::uint8_t>(std::lround(scaled));
      }
  data::write_idx_u8(path, {count, 28, 28}, pixels);
}

template <std::size_t Width>
void generate(const io::safetensors& file, const options& opts) {
  model<dcgan::generator<Width>, cpu<float>> generator;
  load_model(file, "", generator);
  generator.eval();

  std::vector<float> noise_values;
  std::size_t count = opts.count;
  if (!opts.latent.empty()) {
    const io::safetensors noise_file = io::safetensors::load(opts.latent);
    const io::tensor_data& latent = noise_file.at("latent");
    if (latent.shape.size() != 4 || latent.shape[0] == 0 || latent.shape[1] != 100 ||
        latent.shape[2] != 1 || latent.shape[3] != 1)
      throw file_error(opts.latent, "latent",
                       detail::concat("shape ", io::detail::shape_text(latent.shape),
                                      " is not (N, 100, 1, 1)"));
    noise_values = latent.to<float>();
    count = latent.shape[0];
  } else {
    noise_values.resize(count * 100);
    philox noise(opts.seed);
    cpu<float>::fill_normal(noise_values.data(), noise_values.size(), noise, 0, 1);
  }

  std::vector<float> samples;
  cpu<float>::tensor latent;
  constexpr std::size_t chunk = 256;  // bounds memory for large counts
  for (std::size_t done = 0; done < count; done += chunk) {
    const std::size_t batch = std::min(chunk, count - done);
    cpu<float>::resize(latent, batch, 100, 1, 1);
    cpu<float>::copy(noise_values.data() + done * 100, batch * 100, latent.data());
    const auto& images = generator.forward(latent);
    const std::size_t bad = cpu<float>::first_non_finite(images.data(), images.size());
    if (bad < images.size())
      throw numeric_error(opts.generator, 0, "generated images", done * 1024 + bad,
                          images.data()[bad]);
    samples.insert(samples.end(), images.data(), images.data() + images.size());
  }
  if (!opts.save_tensors.empty()) {
    io::safetensors tensors;
    tensors.add<float>("latent", {count, 100, 1, 1}, noise_values);
    tensors.add<float>("images", {count, 1, 32, 32}, samples);
    tensors.save(opts.save_tensors);
  }
  if (ends_with(opts.out, ".idx")) {
    write_idx(opts.out, samples, count);
  } else {
    io::write_png_grid<float>(opts.out, samples, count, 1, 32, 32);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const options opts = parse_options(argc, argv);
    const io::safetensors file = io::safetensors::load(opts.generator);
    // The first layer's weight is (100, 4 * Width, 4, 4), which tells the width.
    const io::tensor_data& first = file.at("0.weight");
    const std::size_t width = first.shape.size() == 4 ? first.shape[1] / 4 : 0;
    if (width == dcgan::small_width)
      generate<dcgan::small_width>(file, opts);
    else if (width == dcgan::reference_width)
      generate<dcgan::reference_width>(file, opts);
    else
      throw file_error(opts.generator, "0.weight",
                       detail::concat("shape ", io::detail::shape_text(first.shape),
                                      " is not the first layer of a known DCGAN generator "
                                      "(expected (100, 128, 4, 4) or (100, 512, 4, 4))"));
    std::printf("wrote %s\n", opts.out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "generate: %s\n", e.what());
    return 1;
  }
  return 0;
}

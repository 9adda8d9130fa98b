// Computes FID InceptionV3 features for tests/interop/inception_interop.py.
//
//   inception_features WEIGHTS IMAGES OUT
//
// WEIGHTS is a safetensors file written by scripts/convert_inception_weights.py.
// IMAGES contains float images "images.<set>" of shape (N, C, H, W) in
// [-1, 1], with C = 1 or 3. OUT receives, for every set, F64 tensors of shape
// (N, 2048):
//   features.<set>    inception_features::extract, the float32 network;
//   features64.<set>  the same network in double precision, with the input
//                     resized in double, which checks the architecture
//                     without float32 rounding.
// Any error ends the program with a message and exit status 1.

#include <cstdio>     // std::fprintf
#include <exception>  // std::exception
#include <memory>     // std::make_unique
#include <span>       // std::span
#include <string>     // std::string
#include <vector>     // std::vector

#include <advgan/backend/cpu.hpp>
#include <advgan/io/safetensors.hpp>
#include <advgan/metrics/inception.hpp>

namespace {

using namespace advgan;

/// Runs the double-precision network on images in [-1, 1].
std::vector<double> double_features(fid_inception_v3<cpu<double>>& network,
                                    const std::vector<double>& images, std::size_t count,
                                    std::size_t channels, std::size_t height, std::size_t width) {
  constexpr std::size_t side = inception::image_side;
  std::vector<double> features;
  cpu<double>::tensor batch;
  for (std::size_t n = 0; n < count; ++n) {
    cpu<double>::resize(batch, 1, 3, side, side);
    const double* image = images.data() + n * channels * height * width;
    for (std::size_t c = 0; c < 3; ++c)
      detail::resize_bilinear_planes(image + (channels == 1 ? 0 : c) * height * width, 1, height,
                                     width, side, side, batch.data() + c * side * side);
    const cpu<double>::tensor& output = network.forward(batch);
    features.insert(features.end(), output.data(), output.data() + output.size());
  }
  return features;
}

void run(const std::string& weights, const std::string& images_path, const std::string& out) {
  set_threads(2);
  inception_features extractor(weights);
  auto network64 = std::make_unique<fid_inception_v3<cpu<double>>>();
  load_model(weights, *network64);

  const io::safetensors images = io::safetensors::load(images_path);
  io::safetensors result;
  const std::string prefix = "images.";
  for (const std::string& name : images.names()) {
    if (!name.starts_with(prefix)) continue;
    const std::string set = name.substr(prefix.size());
    const io::tensor_data& tensor = images.at(name);
    if (tensor.shape.size() != 4)
      throw file_error(images_path, name, "expected a tensor of shape (N, C, H, W)");
    const std::size_t count = tensor.shape[0];
    const std::size_t channels = tensor.shape[1];
    const std::size_t height = tensor.shape[2];
    const std::size_t width = tensor.shape[3];

    const std::vector<float> values = tensor.to<float>();
    const feature_matrix features =
        extractor.extract(std::span<const float>(values), channels, height, width);
    result.add<double>("features." + set, {count, inception::feature_count},
                       std::span<const double>(features.values));

    const std::vector<double> values64 = tensor.to<double>();
    const std::vector<double> features64 =
        double_features(*network64, values64, count, channels, height, width);
    result.add<double>("features64." + set, {count, inception::feature_count},
                       std::span<const double>(features64));
    std::printf("%s: %zu images of %zu x %zu x %zu\n", set.c_str(), count, channels, height, width);
  }
  result.save(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: inception_features WEIGHTS IMAGES OUT\n");
    return 1;
  }
  try {
    run(argv[1], argv[2], argv[3]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "inception_features: %s\n", e.what());
    return 1;
  }
  return 0;
}

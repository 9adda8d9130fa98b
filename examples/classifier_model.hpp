#pragma once
// The examples' side of the domain metrics: where the committed classifier
// weights are, and the end-of-epoch evaluation of the DCGAN demo, which
// scores generated samples against the Fashion-MNIST test set with the
// classifier's features (see advgan/metrics/domain.hpp).

#include <algorithm>   // std::min
#include <cstddef>     // std::size_t
#include <cstdint>     // std::uint64_t
#include <filesystem>  // std::filesystem::path
#include <span>        // std::span
#include <string>      // std::string
#include <vector>      // std::vector

#include <advgan/advgan.hpp>
#include <advgan/metrics/domain.hpp>
#include <advgan/metrics/metrics.hpp>

namespace classifier_tools {

using namespace advgan;

/// Returns the path of the committed classifier weights: the macro
/// ADVGAN_CLASSIFIER_FILE when the build defines it, else
/// weights/fashion_mnist_classifier.safetensors beside this header. The
/// header's path is the one the compiler used for it. CMake builds name
/// sources by absolute paths, and a relative source path on the command
/// line gives a path relative to the working folder.
inline std::filesystem::path default_classifier_file() {
#ifdef ADVGAN_CLASSIFIER_FILE
  return ADVGAN_CLASSIFIER_FILE;
#else
  return std::filesystem::path(__FILE__).parent_path() / "weights" /
         "fashion_mnist_classifier.safetensors";
#endif
}

/// Domain metrics of one set of generated samples against the test set.
struct sample_scores {
  double fid = 0.0;
  double kid = 0.0;
  double kid_std = 0.0;
  double mode_coverage = 0.0;  ///< share of the 10 classes the samples reach
  double mode_kl = 0.0;        ///< KL(sample classes || test classes) in nats
  double min_class_share = 0.0;  ///< share of the samples in their rarest class
  std::vector<std::string> warnings;
};

/// Scores generated samples against the 10,000 Fashion-MNIST test images.
/// The test images' features are computed once, in the constructor, and
/// every call to score() draws the same latent vectors, so the scores of
/// successive epochs differ only through the generator.
///
/// KID uses 10 subsets of 1000 samples per set rather than the usual 100.
/// At 128 features each subset takes about 5e8 floating-point operations,
/// so 10 subsets cost about 5e9 per epoch, and kid_std still shows the
/// spread of the estimate.
class test_set_scorer {
 public:
  static constexpr std::size_t sample_count = 10000;
  static constexpr std::size_t kid_subsets = 10;
  static constexpr std::size_t kid_subset_size = 1000;
  static constexpr std::size_t latent_size = 100;

  /// Loads the classifier and the test split from `data_dir` and computes
  /// the test features. `seed` selects the latent vectors of score().
  test_set_scorer(const std::filesystem::path& classifier_file,
                  const std::filesystem::path& data_dir, std::uint64_t seed)
      : features_(classifier_file), seed_(seed) {
    const data::labelled_images test = data::fashion_mnist(data::split::test, data_dir);
    test_ = features_.extract(std::span<const std::uint8_t>(test.pixels), test.height, test.width);
  }

  /// Generates sample_count images with `generate(latent, images)`, which
  /// maps a (N, 100, 1, 1) latent batch to (N, 1, 32, 32) images in [-1, 1],
  /// and scores them.
  template <class Generate>
  sample_scores score(Generate&& generate) {
    constexpr std::size_t chunk = 500;
    philox noise(seed_, latent_stream);
    cpu<float>::tensor latent;
    cpu<float>::tensor images;
    std::vector<float> samples;
    samples.reserve(sample_count * 32 * 32);
    for (std::size_t done = 0; done < sample_count; done += chunk) {
      const std::size_t batch = std::min(chunk, sample_count - done);
      cpu<float>::resize(latent, batch, latent_size, 1, 1);
      cpu<float>::fill_normal(latent.data(), latent.size(), noise, 0, 1);
      generate(latent, images);
      samples.insert(samples.end(), images.data(), images.data() + images.size());
    }
    const domain_feature_set generated = features_.extract(std::span<const float>(samples));

    sample_scores scores;
    const frechet_result fid = frechet_distance(test_.features, generated.features);
    scores.fid = fid.value;
    scores.warnings = fid.warnings;
    const kid_result kid = kernel_inception_distance(
        test_.features, generated.features,
        {.subset_size = kid_subset_size, .subsets = kid_subsets, .seed = seed_});
    scores.kid = kid.mean;
    scores.kid_std = kid.stddev;
    const mode_coverage_result modes = mode_coverage(generated.probabilities, test_.probabilities);
    scores.mode_coverage = modes.coverage;
    scores.mode_kl = modes.kl_divergence;
    scores.min_class_share = modes.min_class_share;
    return scores;
  }

 private:
  // The philox stream of the latent vectors, apart from the trainer's.
  static constexpr std::uint64_t latent_stream = 1000;

  domain_features features_;
  domain_feature_set test_;
  std::uint64_t seed_;
};

}  // namespace classifier_tools

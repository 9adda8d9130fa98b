// Tests for data::batcher: shuffling, resuming, scaling, padding and labels.

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "advgan/core/error.hpp"
#include "advgan/core/philox.hpp"
#include "advgan/data/batcher.hpp"
#include "advgan/data/idx.hpp"

namespace {

using advgan::data::batcher;
using advgan::data::batcher_options;
using advgan::data::labelled_images;

// `count` images of height x width whose label is their index and whose
// pixels differ between images, so an output image identifies its source.
labelled_images indexed_images(std::size_t count, std::size_t height, std::size_t width) {
  labelled_images data{count, height, width, {}, {}};
  data.pixels.resize(count * height * width);
  for (std::size_t i = 0; i < data.pixels.size(); ++i) {
    data.pixels[i] = static_cast<std::uint8_t>((i * 37 + i / (height * width)) % 256);
  }
  data.labels.resize(count);
  std::iota(data.labels.begin(), data.labels.end(), std::uint8_t{0});
  return data;
}

template <class Scalar>
Scalar scaled(std::uint8_t pixel) {
  return static_cast<Scalar>(pixel) / static_cast<Scalar>(127.5) - Scalar{1};
}

// One batch as next() wrote it.
template <class Scalar>
struct batch {
  bool returned;
  std::vector<Scalar> images;
  std::vector<std::int64_t> labels;
  bool operator==(const batch&) const = default;
};

template <class Scalar>
batch<Scalar> next_batch(batcher<Scalar>& source) {
  batch<Scalar> out{false,
                    std::vector<Scalar>(source.batch_size() * source.channels() * source.height() *
                                        source.width()),
                    std::vector<std::int64_t>(source.batch_size(), -7)};
  out.returned = source.next(out.images, out.labels);
  return out;
}

// Returns the labels of one epoch in visiting order, and checks that the
// epoch ends with next() returning false.
std::vector<std::int64_t> epoch_labels(batcher<float>& source) {
  std::vector<std::int64_t> labels;
  for (std::size_t b = 0; b < source.batches_per_epoch(); ++b) {
    const batch<float> out = next_batch(source);
    REQUIRE(out.returned);
    labels.insert(labels.end(), out.labels.begin(),
                  out.labels.begin() + static_cast<std::ptrdiff_t>(source.last_batch_size()));
  }
  CHECK_FALSE(next_batch(source).returned);
  return labels;
}

}  // namespace

TEST_CASE("batcher epoch is a permutation") {
  const labelled_images data = indexed_images(50, 3, 2);
  batcher<float> source(data, 10, 42);
  CHECK(source.batches_per_epoch() == 5);
  CHECK(source.epoch() == 0);
  std::vector<std::int64_t> labels = epoch_labels(source);
  CHECK(source.epoch() == 1);
  CHECK(source.state().position == 0);

  std::vector<std::int64_t> identity(50);
  std::iota(identity.begin(), identity.end(), 0);
  CHECK(labels != identity);
  std::sort(labels.begin(), labels.end());
  CHECK(labels == identity);
}

TEST_CASE("batcher labels follow their images") {
  const labelled_images data = indexed_images(12, 3, 2);
  batcher<double> source(data, 4, 7);
  for (int step = 0; step < 3; ++step) {
    const batch<double> out = next_batch(source);
    REQUIRE(out.returned);
    for (std::size_t slot = 0; slot < 4; ++slot) {
      const auto index = static_cast<std::size_t>(out.labels[slot]);
      REQUIRE(index < data.count);
      for (std::size_t k = 0; k < 6; ++k) {
        CAPTURE(slot);
        CAPTURE(k);
        CHECK(out.images[slot * 6 + k] == scaled<double>(data.pixels[index * 6 + k]));
      }
    }
  }
}

TEST_CASE("batcher epochs differ and seeds repeat") {
  const labelled_images data = indexed_images(50, 2, 2);
  batcher<float> first(data, 5, 1234);
  batcher<float> second(data, 5, 1234);
  batcher<float> other_seed(data, 5, 1235);
  std::vector<std::vector<std::int64_t>> epochs;
  for (int epoch = 0; epoch < 3; ++epoch) {
    epochs.push_back(epoch_labels(first));
    CHECK(epoch_labels(second) == epochs.back());
    CHECK(epoch_labels(other_seed) != epochs.back());
  }
  CHECK(epochs[0] != epochs[1]);
  CHECK(epochs[1] != epochs[2]);
  CHECK(epochs[0] != epochs[2]);
}

TEST_CASE("batcher order is Fisher-Yates on philox(seed, epoch)") {
  const labelled_images data = indexed_images(30, 1, 1);
  batcher<float> source(data, 30, 99);
  for (std::uint64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<std::int64_t> expected(30);
    std::iota(expected.begin(), expected.end(), 0);
    advgan::philox random(99, epoch);
    for (std::size_t i = expected.size() - 1; i > 0; --i) {
      std::swap(expected[i], expected[random.below(static_cast<std::uint32_t>(i + 1))]);
    }
    CHECK(epoch_labels(source) == expected);
  }
}

TEST_CASE("batcher restore yields identical batches") {
  const labelled_images data = indexed_images(10, 3, 2);
  batcher<float> original(data, 3, 5);  // 3 batches per epoch, one image dropped
  for (int step = 0; step < 2; ++step) REQUIRE(next_batch(original).returned);
  const auto saved = original.state();
  CHECK(saved.epoch == 0);
  CHECK(saved.position == 6);

  // Nine calls cross two epoch ends, where next() returns false.
  std::vector<batch<float>> expected;
  for (int step = 0; step < 9; ++step) expected.push_back(next_batch(original));
  CHECK(std::count_if(expected.begin(), expected.end(),
                      [](const auto& b) { return !b.returned; }) == 2);

  batcher<float> resumed(data, 3, 5);
  resumed.restore(saved);
  CHECK(resumed.epoch() == 0);
  for (int step = 0; step < 9; ++step) {
    CAPTURE(step);
    CHECK(next_batch(resumed) == expected[static_cast<std::size_t>(step)]);
  }
  CHECK(resumed.state().epoch == original.state().epoch);
  CHECK(resumed.state().position == original.state().position);
}

TEST_CASE("batcher restore to a later epoch matches running there") {
  const labelled_images data = indexed_images(20, 2, 2);
  batcher<float> running(data, 4, 11);
  for (int epoch = 0; epoch < 5; ++epoch) epoch_labels(running);
  REQUIRE(running.epoch() == 5);
  batcher<float> jumped(data, 4, 11);
  jumped.restore({5, 0});
  CHECK(epoch_labels(jumped) == epoch_labels(running));
}

TEST_CASE_TEMPLATE("batcher scales pixels to [-1, 1]", Scalar, float, double) {
  labelled_images data{1, 1, 4, {0, 255, 51, 128}, {3}};
  batcher<Scalar> source(data, 1, 0);
  const batch<Scalar> out = next_batch(source);
  REQUIRE(out.returned);
  CHECK(out.images[0] == Scalar{-1});
  CHECK(out.images[1] == Scalar{1});
  CHECK(out.images[2] == doctest::Approx(-0.6).epsilon(1e-6));
  CHECK(out.images[3] == doctest::Approx(1.0 / 255.0).epsilon(1e-6));
  CHECK(out.labels[0] == 3);
}

TEST_CASE("batcher pads 28x28 to 32x32 in the center") {
  labelled_images data{2, 28, 28, std::vector<std::uint8_t>(2 * 28 * 28, 255), {1, 2}};
  data.pixels[0] = 0;            // image 0, top-left pixel
  data.pixels[28 * 28 - 1] = 0;  // image 0, bottom-right pixel
  batcher<float> source(data, 2, 3, batcher_options{.pad_to = 32, .shuffle = false});
  CHECK(source.height() == 32);
  CHECK(source.width() == 32);
  const batch<float> out = next_batch(source);
  REQUIRE(out.returned);
  REQUIRE(out.images.size() == 2 * 32 * 32);
  for (std::size_t row = 0; row < 32; ++row) {
    for (std::size_t column = 0; column < 32; ++column) {
      const bool inside = row >= 2 && row < 30 && column >= 2 && column < 30;
      CAPTURE(row);
      CAPTURE(column);
      const float value = out.images[row * 32 + column];
      if (!inside) {
        CHECK(value == -1.0f);
      } else if ((row == 2 && column == 2) || (row == 29 && column == 29)) {
        CHECK(value == -1.0f);  // the two black pixels
      } else {
        CHECK(value == 1.0f);
      }
    }
  }
}

TEST_CASE("batcher pads odd differences below and right") {
  const labelled_images data = indexed_images(1, 3, 2);
  batcher<double> source(data, 1, 0, batcher_options{.pad_to = 6});
  const batch<double> out = next_batch(source);
  REQUIRE(out.returned);
  // Rows 1 to 3 and columns 2 to 3 hold the image: (6 - 3) / 2 = 1 and (6 - 2) / 2 = 2.
  for (std::size_t row = 0; row < 6; ++row) {
    for (std::size_t column = 0; column < 6; ++column) {
      CAPTURE(row);
      CAPTURE(column);
      const bool inside = row >= 1 && row < 4 && column >= 2 && column < 4;
      const double expected =
          inside ? scaled<double>(data.pixels[(row - 1) * 2 + (column - 2)]) : -1.0;
      CHECK(out.images[row * 6 + column] == expected);
    }
  }
}

TEST_CASE("batcher drops or keeps the last batch") {
  const labelled_images data = indexed_images(10, 2, 2);
  SUBCASE("dropped by default") {
    batcher<float> source(data, 4, 8);
    CHECK(source.batches_per_epoch() == 2);
    CHECK(next_batch(source).returned);
    CHECK(next_batch(source).returned);
    CHECK_FALSE(next_batch(source).returned);
    CHECK(source.last_batch_size() == 0);
    CHECK(source.epoch() == 1);
  }
  SUBCASE("kept on request") {
    batcher<float> source(data, 4, 8, batcher_options{.drop_last = false});
    CHECK(source.batches_per_epoch() == 3);
    CHECK(next_batch(source).returned);
    CHECK(next_batch(source).returned);
    const batch<float> last = next_batch(source);
    REQUIRE(last.returned);
    CHECK(source.last_batch_size() == 2);
    CHECK(last.labels[2] == -7);  // slots past the last image are left as they were
    CHECK(last.labels[3] == -7);
    CHECK_FALSE(next_batch(source).returned);
    CHECK(source.epoch() == 1);
  }
}

TEST_CASE("batcher without shuffling keeps the data order") {
  const labelled_images data = indexed_images(9, 1, 2);
  batcher<float> source(data, 3, 8, batcher_options{.shuffle = false});
  for (int epoch = 0; epoch < 2; ++epoch) {
    CHECK(epoch_labels(source) == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8});
  }
}

TEST_CASE("batcher rejects invalid arguments") {
  const labelled_images data = indexed_images(10, 3, 2);
  CHECK_THROWS_AS(batcher<float>(data, 0, 1), advgan::argument_error);
  CHECK_THROWS_AS(batcher<float>(data, 11, 1), advgan::argument_error);
  CHECK_THROWS_AS(batcher<float>(data, 2, 1, batcher_options{.pad_to = 2}), advgan::argument_error);
  CHECK_NOTHROW(batcher<float>(data, 10, 1, batcher_options{.pad_to = 3}));

  labelled_images short_labels = data;
  short_labels.labels.pop_back();
  CHECK_THROWS_AS(batcher<float>(short_labels, 2, 1), advgan::argument_error);
  labelled_images short_pixels = data;
  short_pixels.pixels.pop_back();
  CHECK_THROWS_AS(batcher<float>(short_pixels, 2, 1), advgan::argument_error);

  batcher<float> source(data, 2, 1);
  std::vector<float> images(2 * 3 * 2);
  std::vector<std::int64_t> labels(2);
  std::vector<float> too_few(2 * 3 * 2 - 1);
  std::vector<std::int64_t> too_many(3);
  CHECK_THROWS_AS(source.next(too_few, labels), advgan::argument_error);
  CHECK_THROWS_AS(source.next(images, too_many), advgan::argument_error);
  CHECK_THROWS_AS(source.restore({0, 11}), advgan::argument_error);
  CHECK(source.next(images, labels));
}

TEST_CASE("batcher on padded Fashion-MNIST") {
  const labelled_images data = advgan::data::fashion_mnist(advgan::data::split::test);
  batcher<float> source(data, 64, 2024, batcher_options{.pad_to = 32});
  const batch<float> out = next_batch(source);
  REQUIRE(out.returned);

  // The first 64 indices of epoch 0, by the documented shuffle.
  std::vector<std::size_t> order(data.count);
  std::iota(order.begin(), order.end(), std::size_t{0});
  advgan::philox random(2024, 0);
  for (std::size_t i = order.size() - 1; i > 0; --i) {
    std::swap(order[i], order[random.below(static_cast<std::uint32_t>(i + 1))]);
  }

  std::size_t wrong_labels = 0;
  std::size_t wrong_pixels = 0;
  for (std::size_t slot = 0; slot < 64; ++slot) {
    const std::size_t index = order[slot];
    if (out.labels[slot] != data.labels[index]) ++wrong_labels;
    const float* image = out.images.data() + slot * 32 * 32;
    for (std::size_t row = 0; row < 32; ++row) {
      for (std::size_t column = 0; column < 32; ++column) {
        const bool inside = row >= 2 && row < 30 && column >= 2 && column < 30;
        const float expected =
            inside ? scaled<float>(data.pixels[index * 784 + (row - 2) * 28 + (column - 2)])
                   : -1.0f;
        if (image[row * 32 + column] != expected) ++wrong_pixels;
      }
    }
  }
  CHECK(wrong_labels == 0);
  CHECK(wrong_pixels == 0);
}

// Tests for Philox-4x32-10 and the philox stream: published known answers,
// the counter layout, resuming from an offset, separate streams, and the
// range and uniformity of below().

#include <doctest/doctest.h>

#include <array>    // std::array
#include <cmath>    // std::abs
#include <cstddef>  // std::size_t
#include <cstdint>  // std::uint32_t, std::uint64_t
#include <vector>   // std::vector

#include "advgan/core/philox.hpp"

using advgan::philox;
using advgan::philox4x32_10;

namespace {

using block = std::array<std::uint32_t, 4>;
using key_pair = std::array<std::uint32_t, 2>;

struct known_answer {
  block counter;
  key_pair key;
  block expected;
};

// Random123 kat_vectors, lines "philox4x32 10 CTR(4 words) KEY(2 words)
// EXPECTED(4 words)". The first three are the all-zeros, all-ones and pi-digit
// cases. The last two set one counter word and one key word each, so a swap of
// the words of the counter or of the key changes the result.
constexpr std::array<known_answer, 5> known_answers{{
    {{0x00000000, 0x00000000, 0x00000000, 0x00000000},
     {0x00000000, 0x00000000},
     {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    {{0x00000001, 0x00000000, 0x00000000, 0x00000000},
     {0x00000001, 0x00000000},
     {0xac08141b, 0xdfc5ccbe, 0x79c07a47, 0xa7f66093}},
    {{0x00000000, 0x00000000, 0x00000000, 0x00000001},
     {0x00000000, 0x00000001},
     {0x96b27e8c, 0x28826d0f, 0x66d958ef, 0x081509dc}},
}};

// The block function is constexpr, so the first known answer also holds at
// compile time.
static_assert(philox4x32_10({0, 0, 0, 0}, {0, 0}) ==
              block{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});

// Draws a fixed mix of every kind of value, so a resumed stream is compared
// on all of them.
std::vector<double> draw_mixed(philox& rng, int rounds) {
  std::vector<double> values;
  for (int i = 0; i < rounds; ++i) {
    values.push_back(rng.next_u32());
    values.push_back(rng.uniform());
    values.push_back(rng.normal(1.0, 2.0));
    values.push_back(rng.below(10));
    values.push_back(rng.uniform(-3.0, 5.0));
  }
  return values;
}

// Returns the chi-square statistic of `counts` against equal expected counts.
double chi_square_uniform(const std::vector<std::size_t>& counts, std::size_t draws) {
  const double expected = static_cast<double>(draws) / static_cast<double>(counts.size());
  double statistic = 0;
  for (const std::size_t count : counts) {
    const double difference = static_cast<double>(count) - expected;
    statistic += difference * difference / expected;
  }
  return statistic;
}

}  // namespace

TEST_CASE("philox4x32_10 known answers") {
  for (std::size_t i = 0; i < known_answers.size(); ++i) {
    CAPTURE(i);
    const known_answer& answer = known_answers[i];
    const block result = philox4x32_10(answer.counter, answer.key);
    for (std::size_t word = 0; word < 4; ++word) {
      CAPTURE(word);
      CHECK(result[word] == answer.expected[word]);
    }
  }
}

TEST_CASE("philox stream counter layout") {
  // The counter is (offset / 4 as two words, stream as two words) and the key
  // is the seed as two words, low word first.
  const std::uint64_t seed = 0x0123456789abcdefULL;
  const std::uint64_t stream = 0xfedcba9876543210ULL;
  philox rng(seed, stream);
  const key_pair key{0x89abcdef, 0x01234567};
  for (std::uint32_t block_index = 0; block_index < 3; ++block_index) {
    const block expected = philox4x32_10({block_index, 0, 0x76543210, 0xfedcba98}, key);
    for (std::size_t lane = 0; lane < 4; ++lane) {
      CAPTURE(block_index);
      CAPTURE(lane);
      CHECK(rng.next_u32() == expected[lane]);
    }
  }
  CHECK(rng.offset() == 12);

  // Block 2^32 carries into the second counter word.
  rng.seek(std::uint64_t{1} << 34);
  CHECK(rng.next_u32() == philox4x32_10({0, 1, 0x76543210, 0xfedcba98}, key)[0]);
}

TEST_CASE("philox offsets count 32-bit words") {
  philox rng(5);
  rng.next_u32();
  CHECK(rng.offset() == 1);
  rng.uniform();
  CHECK(rng.offset() == 3);
  rng.normal();
  CHECK(rng.offset() == 7);
  rng.uniform(2.0, 4.0);
  CHECK(rng.offset() == 9);
}

TEST_CASE("philox resumes from offset") {
  // Resumes at offsets 0, 3 and 37. The last two fall inside a block of four
  // words.
  for (const int warmup : {0, 3, 37}) {
    CAPTURE(warmup);
    philox original(2024, 7);
    for (int i = 0; i < warmup; ++i) original.next_u32();
    const std::uint64_t offset = original.offset();
    const std::vector<double> expected = draw_mixed(original, 20);

    philox resumed(2024, 7);
    resumed.seek(offset);
    CHECK(resumed.offset() == offset);
    CHECK(draw_mixed(resumed, 20) == expected);

    // Seeking back on the generator that already drew past the offset must
    // not reuse its cached block.
    original.seek(offset);
    CHECK(draw_mixed(original, 20) == expected);
  }
}

TEST_CASE("philox streams and seeds differ") {
  philox base(11, 0);
  philox other_stream(11, 1);
  philox other_seed(12, 0);
  int same_as_stream = 0;
  int same_as_seed = 0;
  for (int i = 0; i < 256; ++i) {
    const std::uint32_t word = base.next_u32();
    same_as_stream += word == other_stream.next_u32() ? 1 : 0;
    same_as_seed += word == other_seed.next_u32() ? 1 : 0;
  }
  // Two independent 32-bit words agree with probability 2^-32.
  CHECK(same_as_stream == 0);
  CHECK(same_as_seed == 0);
}

TEST_CASE("philox uniform range") {
  philox rng(3);
  double low = 1.0;
  double high = 0.0;
  for (int i = 0; i < 100000; ++i) {
    const double u = rng.uniform();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    low = u < low ? u : low;
    high = u > high ? u : high;
  }
  // 100000 draws leave gaps of about 1e-5 at either end.
  CHECK(low < 1e-3);
  CHECK(high > 1.0 - 1e-3);
}

TEST_CASE("philox below small bound") {
  philox rng(99);
  constexpr std::uint32_t bound = 6;
  constexpr std::size_t draws = 60000;
  std::vector<std::size_t> counts(bound, 0);
  for (std::size_t i = 0; i < draws; ++i) {
    const std::uint32_t value = rng.below(bound);
    REQUIRE(value < bound);
    ++counts[value];
  }
  // 20.5 is the 0.999 quantile of chi-square with 5 degrees of freedom.
  CHECK(chi_square_uniform(counts, draws) < 20.5);

  philox one(1);
  for (int i = 0; i < 100; ++i) CHECK(one.below(1) == 0);
}

TEST_CASE("philox below rejects biased words") {
  // With bound = 3 * 2^30, multiplying a 32-bit word by the bound and keeping
  // the high word, without rejection, maps 4 words onto every 3 values and
  // gives values divisible by 3 twice the share of the others (1/2, 1/4,
  // 1/4). Lemire's rejection step makes the three residues equally likely.
  philox rng(17);
  constexpr std::uint32_t bound = 3u << 30;
  constexpr std::size_t draws = 30000;
  std::vector<std::size_t> residues(3, 0);
  for (std::size_t i = 0; i < draws; ++i) {
    const std::uint32_t value = rng.below(bound);
    REQUIRE(value < bound);
    ++residues[value % 3];
  }
  // 13.8 is the 0.999 quantile of chi-square with 2 degrees of freedom. The
  // biased shares would give about 3750.
  CHECK(chi_square_uniform(residues, draws) < 13.8);
}

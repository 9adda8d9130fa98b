// Bitwise determinism of training on the CPU backend. A small DCGAN trained
// for 20 steps in two separate processes at the same thread count gives the
// same weights, optimizer state, counters and losses, bit for bit. A run
// stopped at step 10 and resumed from its checkpoint in a fresh trainer ends
// where the straight run ends, and another seed ends elsewhere. The
// generator in evaluation mode maps the same noise to the same images.
//
// Each run happens in a fresh process: the test forks and executes this
// same test binary with ADVGAN_DETERMINISM_RUN set, and a static initializer
// below performs the run and exits before doctest's main starts. A plain
// fork would not do, because libgomp's thread pool does not survive fork():
// a forked child that enters a parallel region after its parent has used
// one hangs.

#include <doctest/doctest.h>

#include <signal.h>    // kill, SIGKILL
#include <sys/wait.h>  // waitpid
#include <unistd.h>    // fork, execl, usleep, _exit

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "advgan/advgan.hpp"
#include "temporary_folder.hpp"

namespace {

namespace fs = std::filesystem;
using namespace advgan;

// ---------------------------------------------------------------------------
// The training run
// ---------------------------------------------------------------------------

// DCGAN at 1x32x32 with narrow layers: 16-d noise through 32, 16 and 8
// channels, and a discriminator with 8, 16 and 32 channels and batch norm.
using small_generator =
    sequential<input<16, 1, 1>,                                                  //
               conv_transpose2d<32, 4, 1, 0, 0, false>, batch_norm, relu,        // 4x4
               conv_transpose2d<16, 4, 2, 1, 0, false>, batch_norm, relu,        // 8x8
               conv_transpose2d<8, 4, 2, 1, 0, false>, batch_norm, relu,         // 16x16
               conv_transpose2d<1, 4, 2, 1, 0, false>, tanh_activation>;         // 32x32
using small_discriminator = sequential<input<1, 32, 32>,                         //
                                       conv2d<8, 4, 2, 1, false>, leaky_relu<>,  // 16x16
                                       conv2d<16, 4, 2, 1, false>, batch_norm, leaky_relu<>,  // 8x8
                                       conv2d<32, 4, 2, 1, false>, batch_norm, leaky_relu<>,  // 4x4
                                       conv2d<1, 4, 1, 0, false>, flatten>;                   // 1
using backend = cpu<float>;
using small_trainer = gan_trainer<small_generator, small_discriminator, non_saturating, backend>;

constexpr std::size_t image_count = 64;
constexpr std::size_t batch_size = 32;
constexpr int total_steps = 20;
constexpr const char* run_variable = "ADVGAN_DETERMINISM_RUN";

// One training run: where it writes, its thread count and seed, and the
// step after which it saves, discards its trainer and resumes in a fresh
// one (0 for a straight run).
struct run_settings {
  fs::path out;
  int threads = 1;
  std::uint64_t seed = 123;
  int resume_after = 0;
};

std::string encode(const run_settings& run) {
  return run.out.string() + "\n" + std::to_string(run.threads) + "\n" + std::to_string(run.seed) +
         "\n" + std::to_string(run.resume_after);
}

run_settings decode(const std::string& text) {
  std::istringstream in(text);
  run_settings run;
  std::string out;
  std::getline(in, out);
  run.out = out;
  in >> run.threads >> run.seed >> run.resume_after;
  if (!in) throw argument_error(std::string(run_variable) + ": cannot parse \"" + text + "\"");
  return run;
}

// 64 random 28x28 images, the same in every run; the batcher pads them to 32x32.
data::labelled_images random_images() {
  data::labelled_images images{image_count, 28, 28, {}, {}};
  philox random(2024);
  images.pixels.resize(image_count * 28 * 28);
  for (auto& pixel : images.pixels) pixel = static_cast<std::uint8_t>(random.below(256));
  images.labels.resize(image_count);
  for (auto& label : images.labels) label = static_cast<std::uint8_t>(random.below(10));
  return images;
}

trainer_options run_options(std::uint64_t seed) {
  trainer_options options;
  options.seed = seed;
  options.sample_count = 8;
  return options;
}

void write_values(const fs::path& path, std::span<const std::byte> values) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()),
            static_cast<std::streamsize>(values.size()));
  if (!out) throw file_error(path.string(), "", "write failed");
}

std::map<std::string, std::int64_t> batcher_extras(const data::batcher<float>& batches) {
  const auto state = batches.state();
  return {{"batcher_epoch", static_cast<std::int64_t>(state.epoch)},
          {"batcher_position", static_cast<std::int64_t>(state.position)}};
}

// Performs one run and writes into run.out: checkpoint.safetensors after
// the last step, losses.bin (discriminator loss, generator loss, D(x) and
// D(G(z)) of every step as doubles), facts.txt (thread counts and optimizer
// step counts), and the evaluation-mode tests' files.
void perform_run(const run_settings& run) {
  set_threads(run.threads);
  fs::create_directories(run.out);
  const data::labelled_images images = random_images();
  auto batches = std::make_unique<data::batcher<float>>(images, batch_size, run.seed,
                                                        data::batcher_options{.pad_to = 32});
  auto trainer = std::make_unique<small_trainer>(run_options(run.seed));
  std::ofstream facts(run.out / "facts.txt");
  facts << "openmp_threads " << openmp_threads() << "\n"
        << "openblas_threads " << openblas_threads() << "\n";

  backend::tensor real;
  backend::resize(real, batch_size, 1, 32, 32);
  std::vector<std::int64_t> labels(batch_size);
  std::vector<double> losses;
  for (int step = 1; step <= total_steps; ++step) {
    const std::span<float> pixels(backend::data(real), backend::size(real));
    if (!batches->next(pixels, labels) && !batches->next(pixels, labels))
      throw argument_error("the batcher returned no batch");
    const step_record record = trainer->step(real);
    losses.insert(losses.end(), {record.discriminator_loss, record.generator_loss,
                                 record.real_score, record.fake_score});
    if (step == run.resume_after + 1 && run.resume_after != 0)
      facts << "step_count_on_first_resumed_step " << trainer->generator_optimizer().step_count()
            << " " << trainer->discriminator_optimizer().step_count() << "\n";

    if (step == run.resume_after) {
      // Interrupt: save, drop the trainer and the batcher, and resume in
      // fresh ones, as a restarted program would.
      const fs::path checkpoint = run.out / "interrupted.safetensors";
      trainer->save_checkpoint(checkpoint, batcher_extras(*batches));
      trainer = std::make_unique<small_trainer>(run_options(run.seed));
      batches = std::make_unique<data::batcher<float>>(images, batch_size, run.seed,
                                                       data::batcher_options{.pad_to = 32});
      const auto extra = trainer->load_checkpoint(checkpoint);
      batches->restore({static_cast<std::uint64_t>(extra.at("batcher_epoch")),
                        static_cast<std::uint64_t>(extra.at("batcher_position"))});
      facts << "step_count_after_load " << trainer->generator_optimizer().step_count() << " "
            << trainer->discriminator_optimizer().step_count() << "\n";
    }
  }
  trainer->save_checkpoint(run.out / "checkpoint.safetensors", batcher_extras(*batches));
  write_values(run.out / "losses.bin", std::as_bytes(std::span<const double>(losses)));

  // The generator in evaluation mode, twice on the same noise, with the raw
  // and the averaged weights; then the state again, which must not change.
  backend::tensor noise;
  backend::resize(noise, 8, 16, 1, 1);
  philox noise_source(999);
  backend::fill_normal(backend::data(noise), backend::size(noise), noise_source, 0, 1);
  for (const bool average : {false, true}) {
    for (const char* name : {"first", "second"}) {
      backend::tensor images_out;
      trainer->generate(noise, images_out, average);
      const std::span<const float> values(backend::data(images_out), backend::size(images_out));
      write_values(run.out / (std::string(average ? "average_" : "raw_") + name + ".bin"),
                   std::as_bytes(values));
    }
  }
  trainer->save_checkpoint(run.out / "after_generate.safetensors", batcher_extras(*batches));
}

// Runs the requested training run and ends the process, when this binary
// was started by run_in_fresh_process(); otherwise returns 0.
int perform_requested_run() {
  const char* request = std::getenv(run_variable);
  if (request == nullptr) return 0;
  try {
    perform_run(decode(request));
  } catch (const std::exception& failure) {
    std::fprintf(stderr, "determinism run failed: %s\n", failure.what());
    std::_Exit(1);
  }
  std::_Exit(0);
}

[[maybe_unused]] const int requested_run = perform_requested_run();

// ---------------------------------------------------------------------------
// Helpers of the tests
// ---------------------------------------------------------------------------

using advgan::testing::temporary_folder;

// Executes this test binary in a child process to perform `run`, and waits
// up to 10 minutes for it.
void run_in_fresh_process(const run_settings& run) {
  const std::string request = encode(run);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::setenv(run_variable, request.c_str(), 1);
    ::execl("/proc/self/exe", "advgan_tests", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
  int status = 0;
  pid_t done = 0;
  while ((done = ::waitpid(child, &status, WNOHANG)) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(child, SIGKILL);
      ::waitpid(child, &status, 0);
      FAIL("the run in ", run.out.string(), " did not finish within 10 minutes");
    }
    ::usleep(10000);
  }
  REQUIRE(done == child);
  REQUIRE_MESSAGE(WIFEXITED(status), "the run in ", run.out.string(), " was killed");
  REQUIRE_MESSAGE(WEXITSTATUS(status) == 0, "the run in ", run.out.string(), " failed");
}

run_settings run_in(const fs::path& out, int threads, std::uint64_t seed = 123,
                    int resume_after = 0) {
  run_settings run{out, threads, seed, resume_after};
  run_in_fresh_process(run);
  return run;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read ", path.string());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The value of `key` in a facts.txt file, as the rest of its line.
std::string fact(const fs::path& out, const std::string& key) {
  std::istringstream in(read_text(out / "facts.txt"));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + " ", 0) == 0) return line.substr(key.size() + 1);
  return "(missing)";
}

// Names of the tensors whose dtype, shape or bytes differ between two
// checkpoints, and of tensors that only one of them has.
std::vector<std::string> differing_tensors(const fs::path& a, const fs::path& b) {
  const io::safetensors first = io::safetensors::load(a);
  const io::safetensors second = io::safetensors::load(b);
  std::vector<std::string> different;
  for (const std::string& name : first.names()) {
    if (!second.contains(name)) {
      different.push_back(name + " (only in the first)");
      continue;
    }
    const io::tensor_data& x = first.at(name);
    const io::tensor_data& y = second.at(name);
    if (x.type != y.type || x.shape != y.shape || x.bytes != y.bytes) different.push_back(name);
  }
  for (const std::string& name : second.names())
    if (!first.contains(name)) different.push_back(name + " (only in the second)");
  return different;
}

std::string join(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

// Checks that two runs ended in the same state and had the same losses, bit
// for bit.
void check_same_run(const run_settings& a, const run_settings& b) {
  const auto different =
      differing_tensors(a.out / "checkpoint.safetensors", b.out / "checkpoint.safetensors");
  CHECK_MESSAGE(different.empty(), "tensors that differ: ", join(different));
  CHECK(read_text(a.out / "checkpoint.safetensors") == read_text(b.out / "checkpoint.safetensors"));
  const std::string losses = read_text(a.out / "losses.bin");
  CHECK(losses.size() == total_steps * 4 * sizeof(double));
  CHECK(losses == read_text(b.out / "losses.bin"));
}

}  // namespace

TEST_CASE("training is bitwise repeatable at 1 and 2 threads") {
  temporary_folder folder;
  for (const int threads : {1, 2}) {
    CAPTURE(threads);
    const std::string tag = std::to_string(threads) + "-threads-";
    const run_settings first = run_in(folder / (tag + "first"), threads);
    const run_settings second = run_in(folder / (tag + "second"), threads);
    const std::string count = std::to_string(threads);
    CHECK(fact(first.out, "openmp_threads") == count);
    CHECK(fact(first.out, "openblas_threads") == count);
    check_same_run(first, second);
  }
  // Not a promise: the OpenMP split of GEMM and of the loops may change the
  // order of floating-point sums, so 1 and 2 threads may end differently.
  const auto across = differing_tensors(folder / "1-threads-first" / "checkpoint.safetensors",
                                        folder / "2-threads-first" / "checkpoint.safetensors");
  MESSAGE("1 and 2 threads: ",
          across.empty() ? std::string("identical") : "tensors differ: " + join(across));
}

TEST_CASE("another seed trains other weights") {
  temporary_folder folder;
  const run_settings base = run_in(folder / "seed-123", 1, 123);
  const run_settings other = run_in(folder / "seed-124", 1, 124);
  const auto different =
      differing_tensors(base.out / "checkpoint.safetensors", other.out / "checkpoint.safetensors");
  for (const char* name : {"generator.0.weight", "generator.9.weight", "discriminator.0.weight",
                           "discriminator.8.weight", "generator_optimizer.exp_avg"}) {
    CAPTURE(name);
    CHECK(std::find(different.begin(), different.end(), name) != different.end());
  }
  CHECK(read_text(base.out / "losses.bin") != read_text(other.out / "losses.bin"));
}

TEST_CASE("generator in evaluation mode repeats its output") {
  temporary_folder folder;
  const run_settings run = run_in(folder / "run", 2);
  for (const char* weights : {"raw_", "average_"}) {
    CAPTURE(weights);
    const std::string first = read_text(run.out / (std::string(weights) + "first.bin"));
    CHECK(first.size() == 8 * 32 * 32 * sizeof(float));
    CHECK(first == read_text(run.out / (std::string(weights) + "second.bin")));
  }
  // The averaged weights are not the raw ones, so the two outputs differ.
  CHECK(read_text(run.out / "raw_first.bin") != read_text(run.out / "average_first.bin"));
  // Generating neither updated batch norm's running statistics nor swapped
  // the averaged weights in for good.
  const auto changed =
      differing_tensors(run.out / "checkpoint.safetensors", run.out / "after_generate.safetensors");
  CHECK_MESSAGE(changed.empty(), "generate changed: ", join(changed));
}

TEST_CASE("resumed training equals a straight run") {
  temporary_folder folder;
  for (const int threads : {1, 2}) {
    CAPTURE(threads);
    const std::string tag = std::to_string(threads) + "-threads-";
    const run_settings straight = run_in(folder / (tag + "straight"), threads);
    const run_settings resumed = run_in(folder / (tag + "resumed"), threads, 123, 10);
    // Adam's step count t is 10 after the load and 11 on the first resumed
    // step, for both optimizers, as in the straight run.
    CHECK(fact(resumed.out, "step_count_after_load") == "10 10");
    CHECK(fact(resumed.out, "step_count_on_first_resumed_step") == "11 11");
    // The checkpoints contain the weights, Adam's m and v and step count, the
    // average, batch norm's buffers, and trainer.counters: the iteration,
    // the critic step count and both random generators' offsets.
    check_same_run(straight, resumed);
    const io::safetensors final_state =
        io::safetensors::load(straight.out / "checkpoint.safetensors");
    const auto counters = final_state.at("trainer.counters").to<std::int64_t>();
    CHECK(counters[0] == total_steps);
    CHECK(counters[1] == total_steps);
    CHECK(counters[2] > 0);
  }
}

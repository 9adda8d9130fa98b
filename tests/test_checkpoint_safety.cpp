// Crash safety of every file writer: a writer process killed by SIGKILL at
// random points while it replaces a checkpoint, and writes that fail for
// lack of space (RLIMIT_FSIZE). After each, the target must contain either its
// old bytes or the complete new ones, and leftover temporary files must sit
// under names of their own.
//
// Child processes only write files. The models are built and trained in the
// test process before the fork, because an OpenMP thread pool does not
// survive fork(): with libgomp, a child that enters a parallel region after
// its parent has used one hangs.

#include <doctest/doctest.h>

#include <signal.h>        // kill, SIGKILL
#include <sys/resource.h>  // setrlimit, RLIMIT_FSIZE
#include <sys/wait.h>      // waitpid
#include <unistd.h>        // fork, pipe, usleep, _exit

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "advgan/advgan.hpp"
#include "temporary_folder.hpp"

namespace {

namespace fs = std::filesystem;
using namespace advgan;
using bytes = std::vector<char>;

using advgan::testing::temporary_folder;

bytes read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read ", path.string());
  return bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// How a child process ended, and the message it sent through its pipe.
struct child_outcome {
  pid_t pid = 0;
  bool exited = false;
  int exit_code = -1;
  int signal = 0;
  std::string message;
};

// Runs `body` in a forked child, which exits with the code body returns.
// body may set `message`, which the child sends back before it exits. With
// `kill_after` set, the test process sends SIGKILL that many microseconds
// after the fork. The child ends with _exit, so no test state is torn down
// twice.
child_outcome run_in_child(const std::function<int(std::string& message)>& body,
                           std::optional<std::chrono::microseconds> kill_after = std::nullopt) {
  int channel[2];
  REQUIRE(::pipe(channel) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(channel[0]);
    std::string message;
    int code = 3;
    try {
      code = body(message);
    } catch (const std::exception& failure) {
      message = std::string("unexpected exception: ") + failure.what();
    }
    const ssize_t ignored = ::write(channel[1], message.data(), message.size());
    (void)ignored;
    ::_exit(code);
  }
  ::close(channel[1]);
  if (kill_after) {
    ::usleep(static_cast<useconds_t>(kill_after->count()));
    ::kill(child, SIGKILL);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  child_outcome outcome;
  outcome.pid = child;
  outcome.exited = WIFEXITED(status);
  outcome.exit_code = outcome.exited ? WEXITSTATUS(status) : -1;
  outcome.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  char buffer[4096];
  ssize_t got = 0;
  while ((got = ::read(channel[0], buffer, sizeof buffer)) > 0)
    outcome.message.append(buffer, static_cast<std::size_t>(got));
  ::close(channel[0]);
  return outcome;
}

// True when `name` is a temporary file that write_file_atomically made for
// `target` in process `pid`: ".<target>.tmp-<pid>-<n>".
bool is_temporary_of(const std::string& name, const std::string& target, pid_t pid) {
  const std::string prefix = "." + target + ".tmp-" + std::to_string(pid) + "-";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return false;
  return std::all_of(name.begin() + static_cast<std::ptrdiff_t>(prefix.size()), name.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

using tiny_generator =
    sequential<input<8, 1, 1>, conv_transpose2d<8, 4, 1, 0, 0, false>, batch_norm, relu,
               conv_transpose2d<1, 4, 2, 1, 0, false>, tanh_activation>;
using tiny_discriminator =
    sequential<input<1, 8, 8>, conv2d<4, 4, 2, 1, false>, leaky_relu<>, conv2d<8, 4, 2, 1, false>,
               batch_norm, leaky_relu<>, conv2d<1, 2, 1, 0, false>, flatten>;
using backend = cpu<float>;
using tiny_trainer = gan_trainer<tiny_generator, tiny_discriminator, non_saturating, backend>;

trainer_options tiny_options() {
  trainer_options options;
  options.seed = 77;
  options.sample_count = 16;
  return options;
}

backend::tensor random_batch(std::size_t count, std::uint64_t seed) {
  backend::tensor batch;
  backend::resize(batch, count, 1, 8, 8);
  philox random(seed);
  for (std::size_t i = 0; i < backend::size(batch); ++i)
    backend::data(batch)[i] = static_cast<float>(2 * random.uniform() - 1);
  return batch;
}

// ---------------------------------------------------------------------------
// Kill trials
// ---------------------------------------------------------------------------

// One series of kill trials on one target file.
struct kill_series {
  fs::path target;
  int trials = 50;
  std::uint64_t seed = 0;
  // Writes version `trial` to the given path; runs in the child, and in the
  // test process to find the expected bytes and the write's duration.
  std::function<void(const fs::path&, int trial)> write;
  // Checks that a file loads as what it claims to be; throws if not.
  std::function<void(const fs::path&)> load;
};

// Outcome counts of a kill series, for the test log.
struct kill_counts {
  int old_kept = 0;
  int new_installed = 0;
  int completed = 0;
  int killed = 0;
  int leftovers = 0;
};

// Microseconds that one write of version 0 takes, the median of 5.
std::chrono::microseconds measure_write(const kill_series& series, const fs::path& folder) {
  std::vector<std::chrono::microseconds> times;
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    series.write(folder / "timing", 0);
    times.push_back(std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - start));
  }
  fs::remove(folder / "timing");
  std::sort(times.begin(), times.end());
  return times[2];
}

kill_counts run_kill_series(const kill_series& series, const temporary_folder& folder,
                            const temporary_folder& reference) {
  const std::string name = series.target.filename().string();
  series.write(series.target, -1);
  bytes current = read_bytes(series.target);
  const auto duration = measure_write(series, reference.path());
  // Delays cover the whole write, fsync and rename, and a margin after it.
  const auto window = static_cast<std::uint32_t>(2 * duration.count() + 1);
  MESSAGE(name, ": one write takes ", duration.count(), " us; kills land in [0, ", window, ") us");

  philox random(series.seed);
  kill_counts counts;
  for (int trial = 0; trial < series.trials; ++trial) {
    CAPTURE(trial);
    series.write(reference / "expected", trial);
    const bytes next = read_bytes(reference / "expected");
    REQUIRE(next != current);

    const std::chrono::microseconds delay(random.below(window));
    CAPTURE(delay.count());
    const child_outcome outcome = run_in_child(
        [&](std::string&) {
          series.write(series.target, trial);
          return 0;
        },
        delay);
    if (outcome.signal == SIGKILL) {
      ++counts.killed;
    } else {
      CHECK_MESSAGE(outcome.exit_code == 0, outcome.message);
      ++counts.completed;
    }

    // The target is the old file or the new one, whole, and it loads.
    REQUIRE(fs::exists(series.target));
    const bytes found = read_bytes(series.target);
    const bool is_old = found == current;
    const bool is_new = found == next;
    CHECK_MESSAGE((is_old || is_new), "target contains ", found.size(), " bytes, old ",
                  current.size(), ", new ", next.size());
    if (outcome.signal != SIGKILL) CHECK(is_new);
    CHECK_NOTHROW(series.load(series.target));
    if (is_new) {
      ++counts.new_installed;
      current = next;
    } else if (is_old) {
      ++counts.old_kept;
    }

    // Anything else in the folder is the killed writer's temporary file.
    for (const std::string& entry : folder.entries()) {
      if (entry == name) continue;
      CHECK_MESSAGE(is_temporary_of(entry, name, outcome.pid), "unexpected file ", entry);
      ++counts.leftovers;
      fs::remove(folder / entry);
    }
  }
  MESSAGE(name, ": ", counts.killed, " killed, ", counts.completed, " completed; ", counts.old_kept,
          " kept the old file, ", counts.new_installed, " installed the new one; ",
          counts.leftovers, " temporary files left behind");
  return counts;
}

}  // namespace

TEST_CASE("checkpoint survives SIGKILL during save_checkpoint") {
  temporary_folder folder;
  temporary_folder reference;
  tiny_trainer trainer(tiny_options());
  trainer.step(random_batch(8, 1));
  trainer.step(random_batch(8, 2));

  kill_series series;
  series.target = folder / "checkpoint.safetensors";
  series.seed = 20240611;
  series.write = [&](const fs::path& path, int trial) {
    trainer.save_checkpoint(path, {{"trial", trial}});
  };
  series.load = [](const fs::path& path) {
    tiny_trainer fresh(tiny_options());
    fresh.load_checkpoint(path);
    if (fresh.iteration() != 2)
      throw std::runtime_error("loaded checkpoint has the wrong iteration");
  };
  const kill_counts counts = run_kill_series(series, folder, reference);
  // A delay of a few microseconds kills the child before it renames, so a
  // series where no kill landed means the trials tested nothing.
  CHECK(counts.killed > 0);
}

TEST_CASE("safetensors file of 4 MiB survives SIGKILL during save") {
  temporary_folder folder;
  temporary_folder reference;
  std::vector<float> weights(std::size_t{1} << 20);
  philox random(5);
  for (float& weight : weights) weight = static_cast<float>(random.normal());

  kill_series series;
  series.target = folder / "weights.safetensors";
  series.seed = 99;
  series.write = [&](const fs::path& path, int trial) {
    io::safetensors file;
    file.add<float>("weight", {1024, 1024}, weights);
    const std::int64_t version[] = {trial};
    file.add<std::int64_t>("version", {}, version);
    file.save(path);
  };
  series.load = [](const fs::path& path) {
    const io::safetensors file = io::safetensors::load(path);
    if (file.at("weight").shape != std::vector<std::size_t>{1024, 1024})
      throw std::runtime_error("loaded tensor has the wrong shape");
  };
  const kill_counts counts = run_kill_series(series, folder, reference);
  CHECK(counts.killed > 0);
}

// ---------------------------------------------------------------------------
// Writes that run out of space
// ---------------------------------------------------------------------------

namespace {

// The largest file size the children may write. Every new file is larger,
// and so is every old one, so that a writer which truncated the target in
// place would leave it cut at this size.
constexpr rlim_t size_limit = 200;

// Replaces `path`, whose current contents came from a finished write, by
// `write` in a child process limited to size_limit bytes. The child ignores
// SIGXFSZ, so the limit shows as EFBIG from write(). Checks that the write
// throws file_error naming the path and the error, and that the old file
// and nothing else remain.
void check_write_without_space(const temporary_folder& folder, const fs::path& path,
                               const std::function<void()>& write) {
  const bytes old_bytes = read_bytes(path);
  REQUIRE(old_bytes.size() > size_limit);
  const std::vector<std::string> old_entries = folder.entries();

  const child_outcome outcome = run_in_child([&](std::string& message) {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{size_limit, size_limit};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) {
      message = "setrlimit failed";
      return 4;
    }
    try {
      write();
    } catch (const file_error& failure) {
      message = failure.what();
      return 0;
    }
    message = "the write succeeded despite the size limit";
    return 1;
  });
  CAPTURE(outcome.message);
  REQUIRE(outcome.exited);
  CHECK(outcome.exit_code == 0);
  CHECK(contains(outcome.message, path.string()));
  CHECK(contains(outcome.message, std::strerror(EFBIG)));
  CHECK(contains(outcome.message, "write failed after " + std::to_string(size_limit) + " of "));

  CHECK(read_bytes(path) == old_bytes);
  CHECK(folder.entries() == old_entries);
}

}  // namespace

TEST_CASE("writers keep the old file when the disk is full") {
  temporary_folder folder;
  tiny_trainer trainer(tiny_options());
  trainer.step(random_batch(8, 3));

  SUBCASE("save_checkpoint") {
    const fs::path path = folder / "checkpoint.safetensors";
    trainer.save_checkpoint(path);
    trainer.step(random_batch(8, 4));
    check_write_without_space(folder, path, [&] { trainer.save_checkpoint(path); });
    tiny_trainer fresh(tiny_options());
    fresh.load_checkpoint(path);
    CHECK(fresh.iteration() == 1);
  }

  SUBCASE("save_generator") {
    const fs::path path = folder / "generator.safetensors";
    trainer.save_generator(path);
    trainer.step(random_batch(8, 4));
    check_write_without_space(folder, path, [&] { trainer.save_generator(path); });
  }

  SUBCASE("save_model") {
    const fs::path path = folder / "discriminator.safetensors";
    model<tiny_discriminator, backend> first(1, init_scheme::dcgan);
    model<tiny_discriminator, backend> second(2, init_scheme::dcgan);
    save_model(path, first);
    check_write_without_space(folder, path, [&] { save_model(path, second); });
    model<tiny_discriminator, backend> reloaded(3);
    load_model(path, reloaded);
    CHECK(std::equal(first.parameters(), first.parameters() + first.parameter_count,
                     reloaded.parameters()));
  }

  SUBCASE("write_png_grid") {
    const fs::path path = folder / "samples.png";
    backend::tensor samples;
    trainer.sample_fixed(samples);
    const std::span<const float> values(backend::data(samples), backend::size(samples));
    io::write_png_grid<float>(path, values, 16, 1, 8, 8);
    const backend::tensor noise = random_batch(16, 6);
    const std::span<const float> other(backend::data(noise), backend::size(noise));
    check_write_without_space(folder, path,
                              [&] { io::write_png_grid<float>(path, other, 16, 1, 8, 8); });
    const io::png_image image = io::read_png(path);
    CHECK(image.width == 4 * 8 + 3 * 2);
  }

  SUBCASE("write_idx_u8") {
    const fs::path path = folder / "labels-idx1-ubyte";
    std::vector<std::uint8_t> labels(1000);
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::uint8_t>(i % 10);
    data::write_idx_u8(path, {labels.size()}, labels);
    const std::vector<std::uint8_t> more(3000, 7);
    check_write_without_space(folder, path, [&] { data::write_idx_u8(path, {more.size()}, more); });
    std::vector<std::size_t> dims;
    CHECK(data::read_idx_u8(path, 1, dims) == labels);
  }
}

// write_file_atomically and the temporary files that killed saves leave:
// the next save of the same path removes those of writers that no longer
// exist, and keeps those of live processes and of other paths.

#include <doctest/doctest.h>

#include <signal.h>    // kill, SIGKILL
#include <sys/wait.h>  // waitpid
#include <unistd.h>    // fork, pipe, read, getpid, _exit

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "advgan/io/atomic_file.hpp"
#include "temporary_folder.hpp"

namespace {

namespace fs = std::filesystem;

using advgan::testing::temporary_folder;

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void save_text(const fs::path& path, const std::string& text) {
  advgan::io::write_file_atomically(
      path, std::span(reinterpret_cast<const std::byte*>(text.data()), text.size()));
}

// Returns the id of a process that has exited and been reaped, so that
// kill(pid, 0) fails with ESRCH until the system reuses the id.
pid_t pid_of_exited_process() {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(::kill(child, 0) != 0);
  return child;
}

// A child process that stays alive until the object is destroyed.
class live_process {
 public:
  live_process() {
    int channel[2];
    REQUIRE(::pipe(channel) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::close(channel[1]);
      char byte = 0;
      // Blocks until the parent closes its end.
      const ssize_t ignored = ::read(channel[0], &byte, 1);
      (void)ignored;
      ::_exit(0);
    }
    ::close(channel[0]);
    write_end_ = channel[1];
  }
  ~live_process() {
    ::close(write_end_);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  live_process(const live_process&) = delete;
  live_process& operator=(const live_process&) = delete;

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = 0;
  int write_end_ = -1;
};

std::string temporary_name(const std::string& target, pid_t pid, int counter) {
  return "." + target + ".tmp-" + std::to_string(pid) + "-" + std::to_string(counter);
}

}  // namespace

TEST_CASE("atomic write removes temporaries of exited writers") {
  temporary_folder folder;
  const fs::path target = folder / "checkpoint.safetensors";
  write_text(target, "old");
  const pid_t exited = pid_of_exited_process();
  const pid_t exited_too = pid_of_exited_process();
  const live_process other_writer;

  const std::vector<std::string> stale = {temporary_name("checkpoint.safetensors", exited, 0),
                                          temporary_name("checkpoint.safetensors", exited, 17),
                                          temporary_name("checkpoint.safetensors", exited_too, 3)};
  const std::vector<std::string> kept = {
      // Live writers: this process, whose other threads may be saving, and another one.
      temporary_name("checkpoint.safetensors", ::getpid(), 999),
      temporary_name("checkpoint.safetensors", other_writer.pid(), 0),
      // Another target's temporary, with the same exited writer.
      temporary_name("other.safetensors", exited, 0),
      temporary_name("checkpoint", exited, 0),
      // Names that only resemble a temporary.
      ".checkpoint.safetensors.tmp-" + std::to_string(exited),
      ".checkpoint.safetensors.tmp-" + std::to_string(exited) + "-",
      ".checkpoint.safetensors.tmp-" + std::to_string(exited) + "-1x",
      ".checkpoint.safetensors.tmp--1-0",
      ".checkpoint.safetensors.tmp-0-0",
      ".checkpoint.safetensors.tmp-99999999999999999999-0",
      "checkpoint.safetensors.tmp-" + std::to_string(exited) + "-0",
  };
  for (const std::string& name : stale) write_text(folder / name, "partial");
  for (const std::string& name : kept) write_text(folder / name, "partial");

  save_text(target, "new");

  CHECK(read_text(target) == "new");
  std::vector<std::string> expected = kept;
  expected.push_back("checkpoint.safetensors");
  std::sort(expected.begin(), expected.end());
  CHECK(folder.entries() == expected);
  for (const std::string& name : stale) CHECK_MESSAGE(!fs::exists(folder / name), name);
}

TEST_CASE("atomic write cleans up after a killed save") {
  // The child sends itself SIGKILL inside a save, after its temporary file
  // exists and before the rename. The next save by this process removes
  // what it left.
  temporary_folder folder;
  const fs::path target = folder / "model.bin";
  save_text(target, "first");
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const std::string name = temporary_name("model.bin", ::getpid(), 0);
    std::ofstream(folder / name) << "half written";
    ::kill(::getpid(), SIGKILL);
    ::_exit(1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFSIGNALED(status));
  CHECK(folder.entries().size() == 2);

  save_text(target, "second");
  CHECK(read_text(target) == "second");
  CHECK(folder.entries() == std::vector<std::string>{"model.bin"});
}

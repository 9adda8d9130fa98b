#pragma once
// Atomic file replacement: the new contents go to a temporary file in the
// target's folder, which is flushed to disk and then renamed over the target.
// A reader, or a crash at any moment, sees either the old file or the new one,
// never a truncated mix of the two.

#include <fcntl.h>     // open, O_* flags
#include <signal.h>    // kill
#include <sys/stat.h>  // fstat, fchmod, stat
#include <unistd.h>    // write, fsync, close, getpid, unlink

#include <algorithm>     // std::all_of
#include <atomic>        // std::atomic
#include <cerrno>        // errno, EINTR, EINVAL, EEXIST, ENOSPC, ESRCH
#include <charconv>      // std::from_chars
#include <cstddef>       // std::byte, std::size_t
#include <cstdio>        // std::rename
#include <cstring>       // std::strerror
#include <filesystem>    // std::filesystem::path
#include <span>          // std::span
#include <string>        // std::string
#include <string_view>   // std::string_view
#include <system_error>  // std::error_code, std::errc

#include "advgan/core/error.hpp"

namespace advgan::io {

namespace detail {

// Returns the text of an errno value, as in "No space left on device".
inline std::string errno_text(int code) {
  return std::strerror(code);
}

// Returns the prefix of the temporary names of `path`: ".<name>.tmp-".
inline std::string temporary_prefix_for(const std::filesystem::path& path) {
  // Appending in steps, because g++ 12 at -O3 warns (-Wrestrict) about
  // "." + std::string, falsely.
  std::string prefix = ".";
  prefix += path.filename().string();
  prefix += ".tmp-";
  return prefix;
}

// Returns a temporary name beside `path` that no other thread or live process
// uses, because it contains the process id and a per-process counter:
// ".<name>.tmp-<pid>-<counter>".
inline std::filesystem::path temporary_path_for(const std::filesystem::path& path,
                                                const std::filesystem::path& folder) {
  static std::atomic<unsigned long> counter{0};
  return folder /
         advgan::detail::concat(temporary_prefix_for(path), ::getpid(), "-", counter.fetch_add(1));
}

// Returns the writer's process id from a name that temporary_path_for made
// for `prefix`, or 0 if `name` is not such a name.
inline pid_t temporary_writer_of(std::string_view name, std::string_view prefix) {
  if (name.substr(0, prefix.size()) != prefix) return 0;
  const std::string_view rest = name.substr(prefix.size());
  const std::size_t dash = rest.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 == rest.size()) return 0;
  auto all_digits = [](std::string_view text) {
    return std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!all_digits(rest.substr(0, dash)) || !all_digits(rest.substr(dash + 1))) return 0;
  pid_t pid = 0;
  const auto [end, error] = std::from_chars(rest.data(), rest.data() + dash, pid);
  if (error != std::errc() || end != rest.data() + dash) return 0;
  return pid;
}

// Removes the temporary files of `path` in `folder` whose writer process no
// longer exists, as a save killed by SIGKILL leaves them. A temporary file
// of a live process, this one included, stays, because that process may
// still be writing it. Cleanup is best effort: an error while listing or
// removing leaves the files in place and does not fail the save.
// NOTE: kill(pid, 0) looks up the pid in this process's pid namespace, so a
// writer on another machine or in another container that shares the folder
// counts as gone, and its save then fails at the rename with file_error.
inline void remove_stale_temporaries(const std::filesystem::path& path,
                                     const std::filesystem::path& folder) {
  const std::string prefix = temporary_prefix_for(path);
  std::error_code error;
  for (std::filesystem::directory_iterator entry(folder, error), end; !error && entry != end;
       entry.increment(error)) {
    const pid_t writer = temporary_writer_of(entry->path().filename().string(), prefix);
    if (writer <= 0) continue;  // kill() reads 0 and negative ids as process groups
    if (::kill(writer, 0) == 0 || errno != ESRCH) continue;
    std::error_code ignored;
    std::filesystem::remove(entry->path(), ignored);
  }
}

// Owns a file descriptor and, until release_path(), the temporary file it
// names: the destructor closes the descriptor and removes the file, so every
// failure path leaves no temporary file behind.
class temporary_file {
 public:
  explicit temporary_file(std::filesystem::path path) : path_(std::move(path)) {}
  temporary_file(const temporary_file&) = delete;
  temporary_file& operator=(const temporary_file&) = delete;
  ~temporary_file() {
    if (fd_ >= 0) ::close(fd_);
    if (owns_path_) ::unlink(path_.c_str());
  }

  // Creates the file; returns false with errno set on failure. A file left
  // under the same name by a crashed process that had the same id is removed
  // and the creation tried once more.
  bool open(mode_t mode) {
    const int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
    fd_ = ::open(path_.c_str(), flags, mode);
    if (fd_ < 0 && errno == EEXIST && ::unlink(path_.c_str()) == 0)
      fd_ = ::open(path_.c_str(), flags, mode);
    owns_path_ = fd_ >= 0;
    return owns_path_;
  }

  // Closes the descriptor; returns false with errno set when close reports a
  // deferred write error, as network file systems may.
  bool close() {
    const int fd = fd_;
    fd_ = -1;
    return ::close(fd) == 0;
  }

  void release_path() { owns_path_ = false; }
  int fd() const { return fd_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  bool owns_path_ = false;
};

// Writes all bytes, retrying partial writes and EINTR. Returns the number of
// bytes written before an error (errno set) or bytes.size() on success.
inline std::size_t write_all(int fd, std::span<const std::byte> bytes) {
  std::size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t result = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (result < 0) {
      if (errno == EINTR) continue;
      return written;
    }
    // A write that stores nothing without an error would loop forever, so it
    // counts as a failure, reported as "no space".
    if (result == 0) {
      errno = ENOSPC;
      return written;
    }
    written += static_cast<std::size_t>(result);
  }
  return written;
}

// Flushes a folder's entry list, so that a rename inside it survives a crash.
// Returns false with errno set on failure; file systems that cannot sync a
// folder (EINVAL) count as success.
inline bool sync_folder(const std::filesystem::path& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool synced = ::fsync(fd) == 0 || errno == EINVAL;
  const int saved = errno;
  ::close(fd);
  errno = saved;
  return synced;
}

}  // namespace detail

/// Replaces the file at `path` with `bytes` atomically.
///
/// Writes to `.<name>.tmp-<pid>-<n>` in the same folder, checks every write,
/// fsyncs the file, renames it over `path` and fsyncs the folder. Before
/// that, it removes the temporary files of `path` that earlier saves left
/// when they were killed, recognised by a <pid> of a process that no longer
/// exists. An existing
/// target keeps its permission bits and is never truncated. A symbolic link at
/// `path` is replaced by the new file, not followed. On a failure before the
/// rename (no space, EFBIG from RLIMIT_FSIZE, a missing folder) the temporary
/// file is removed, the target is left as it was, and file_error names the
/// path and the system error. A failed fsync of the folder after the rename
/// also throws, although the target then already has the new contents.
inline void write_file_atomically(const std::filesystem::path& path,
                                  std::span<const std::byte> bytes) {
  const std::string name = path.string();
  // Throws file_error for a failed step. The errno value comes first, so it
  // is read before any argument could allocate and overwrite it.
  auto fail = [&](int code, const auto&... step) {
    throw file_error(name, "", advgan::detail::concat(step..., ": ", detail::errno_text(code)));
  };
  if (!path.has_filename()) throw file_error(name, "", "path has no file name");

  std::filesystem::path folder = path.parent_path();
  if (folder.empty()) folder = ".";
  // Stale temporaries go first, so that their space is free for this write.
  detail::remove_stale_temporaries(path, folder);
  detail::temporary_file temporary(detail::temporary_path_for(path, folder));
  struct stat target_status {};
  const bool target_exists = ::stat(path.c_str(), &target_status) == 0;
  const mode_t mode = target_exists ? (target_status.st_mode & 07777) : 0666;
  if (!temporary.open(mode)) fail(errno, "cannot create temporary file ", temporary.path().c_str());
  // open() applies the umask, so the target's permission bits are set again.
  if (target_exists && ::fchmod(temporary.fd(), mode) != 0)
    fail(errno, "cannot set permissions of ", temporary.path().c_str());

  const std::size_t written = detail::write_all(temporary.fd(), bytes);
  if (written != bytes.size())
    fail(errno, "write failed after ", written, " of ", bytes.size(), " bytes");
  if (::fsync(temporary.fd()) != 0) fail(errno, "fsync failed");
  if (!temporary.close()) fail(errno, "close failed");
  if (std::rename(temporary.path().c_str(), path.c_str()) != 0)
    fail(errno, "cannot rename ", temporary.path().c_str(), " over the target");
  temporary.release_path();
  if (!detail::sync_folder(folder)) fail(errno, "fsync of folder ", folder.c_str(), " failed");
}

}  // namespace advgan::io

#pragma once
// Atomic file replacement: the new contents go to a temporary file in the
// target's folder, which is flushed to disk and then renamed over the target.
// A reader, or a crash at any moment, sees either the old file or the new one,
// never a truncated mix of the two.

#include <fcntl.h>     // open, O_* flags
#include <sys/stat.h>  // fstat, fchmod, stat
#include <unistd.h>    // write, fsync, close, getpid, unlink

#include <atomic>      // std::atomic
#include <cerrno>      // errno, EINTR, EINVAL, EEXIST, ENOSPC
#include <cstddef>     // std::byte, std::size_t
#include <cstdio>      // std::rename
#include <cstring>     // std::strerror
#include <filesystem>  // std::filesystem::path
#include <span>        // std::span
#include <string>      // std::string

#include "advgan/core/error.hpp"

namespace advgan::io {

namespace detail {

// Returns the text of an errno value, as in "No space left on device".
inline std::string errno_text(int code) {
  return std::strerror(code);
}

// Returns a temporary name beside `path` that no other thread or live process
// uses, because it contains the process id and a per-process counter.
inline std::filesystem::path temporary_path_for(const std::filesystem::path& path,
                                                const std::filesystem::path& folder) {
  static std::atomic<unsigned long> counter{0};
  return folder / advgan::detail::concat(".", path.filename().string(), ".tmp-", ::getpid(), "-",
                                         counter.fetch_add(1));
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
/// fsyncs the file, renames it over `path` and fsyncs the folder. An existing
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

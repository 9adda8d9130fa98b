#pragma once
// Exception types. Every error advgan throws derives from advgan::error, and
// each kind carries the fields a user needs to find the cause: the file and
// field, the layer and shapes, or the layer, iteration and first bad index.

#include <cstddef>    // std::size_t
#include <cstdint>    // std::int64_t
#include <sstream>    // std::ostringstream
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string
#include <utility>    // std::move

namespace advgan {

namespace detail {

// Joins the arguments' stream representations into one string.
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

}  // namespace detail

/// Base of every exception advgan throws.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& message) : std::runtime_error(message) {}
};

/// A file that cannot be read or written, or whose contents break its format.
/// `field` names the part of the format (a header field, a tensor name) and
/// `offset` the byte position, or npos when no single position applies.
class file_error : public error {
 public:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  file_error(std::string path, std::string field, const std::string& problem,
             std::size_t offset = npos)
      : error(make_message(path, field, problem, offset)),
        path_(std::move(path)),
        field_(std::move(field)),
        offset_(offset) {}

  const std::string& path() const noexcept { return path_; }
  const std::string& field() const noexcept { return field_; }
  std::size_t offset() const noexcept { return offset_; }

 private:
  static std::string make_message(const std::string& path, const std::string& field,
                                  const std::string& problem, std::size_t offset) {
    std::string message = path;
    if (!field.empty()) message += ": " + field;
    if (offset != npos) message += detail::concat(" (byte ", offset, ")");
    return message + ": " + problem;
  }

  std::string path_;
  std::string field_;
  std::size_t offset_;
};

/// A tensor whose shape does not fit the layer or model that receives it.
class shape_error : public error {
 public:
  shape_error(std::string layer, std::string expected, std::string actual)
      : error(detail::concat(layer, ": expected shape ", expected, ", got ", actual)),
        layer_(std::move(layer)),
        expected_(std::move(expected)),
        actual_(std::move(actual)) {}

  const std::string& layer() const noexcept { return layer_; }
  const std::string& expected() const noexcept { return expected_; }
  const std::string& actual() const noexcept { return actual_; }

 private:
  std::string layer_;
  std::string expected_;
  std::string actual_;
};

/// A NaN or infinity found in a tensor during training or evaluation.
class numeric_error : public error {
 public:
  numeric_error(std::string layer, std::int64_t iteration, std::string tensor, std::size_t index,
                double value)
      : error(detail::concat("non-finite value ", value, " in ", tensor, " of ", layer,
                             " at index ", index, ", iteration ", iteration)),
        layer_(std::move(layer)),
        iteration_(iteration),
        tensor_(std::move(tensor)),
        index_(index) {}

  const std::string& layer() const noexcept { return layer_; }
  std::int64_t iteration() const noexcept { return iteration_; }
  const std::string& tensor() const noexcept { return tensor_; }
  std::size_t index() const noexcept { return index_; }

 private:
  std::string layer_;
  std::int64_t iteration_;
  std::string tensor_;
  std::size_t index_;
};

/// An argument outside its valid range: a batch size of 0, a subset larger
/// than its set, an option that cannot be combined with another.
class argument_error : public error {
 public:
  explicit argument_error(const std::string& message) : error(message) {}
};

}  // namespace advgan

#pragma once
// Moves a model's parameters and buffers into and out of a safetensors
// file under PyTorch's state_dict names, behind an optional prefix
// ("generator.0.weight" in a checkpoint, "0.weight" in a generator file).

#include <cstddef>  // std::byte, std::size_t
#include <cstdint>  // std::int64_t
#include <cstring>  // std::memcpy
#include <span>     // std::span
#include <string>   // std::string
#include <vector>   // std::vector

#include "advgan/core/error.hpp"
#include "advgan/io/safetensors.hpp"
#include "advgan/layers/layer.hpp"

namespace advgan {

namespace detail {

/// Throws file_error unless `file` holds `name` with exactly `shape`.
inline void check_tensor_shape(const io::safetensors& file, const std::string& name,
                               const std::vector<std::size_t>& shape) {
  const io::tensor_data& tensor = file.at(name);
  if (tensor.shape != shape)
    throw file_error(file.source(), name,
                     concat("shape ", io::detail::shape_text(tensor.shape),
                            " does not match the model's shape ", io::detail::shape_text(shape)));
}

/// Stores, checks or loads one buffer; the overloads follow the two forms
/// that visit_buffers passes: floating-point arrays and int64 counters.
struct buffer_store {
  io::safetensors& file;
  template <class Scalar>
  void operator()(const std::string& name, Scalar* data, const parameter_spec& spec) const {
    file.add<Scalar>(name, spec.shape(), std::span<const Scalar>(data, spec.size()));
  }
  void operator()(const std::string& name, std::int64_t& counter) const {
    file.add<std::int64_t>(name, {}, std::span<const std::int64_t>(&counter, 1));
  }
};

struct buffer_check {
  const io::safetensors& file;
  template <class Scalar>
  void operator()(const std::string& name, Scalar*, const parameter_spec& spec) const {
    check_tensor_shape(file, name, spec.shape());
  }
  void operator()(const std::string& name, std::int64_t&) const {
    check_tensor_shape(file, name, {});
  }
};

/// Values converted from a file's tensors, kept apart from the model until
/// every tensor has converted, so that a value that does not convert (1e300
/// for a float parameter, 1.5 for a counter) leaves the model unchanged.
/// read() and commit() must visit the tensors in the same order.
struct staged_values {
  std::vector<std::vector<std::byte>> values;
  std::size_t next = 0;

  template <class T>
  void read(const io::safetensors& file, const std::string& name,
            const std::vector<std::size_t>& shape, std::size_t count) {
    std::vector<T> converted(count);
    file.read_into<T>(name, shape, std::span<T>(converted));
    std::vector<std::byte>& raw = values.emplace_back(count * sizeof(T));
    if (count != 0) std::memcpy(raw.data(), converted.data(), raw.size());
  }

  template <class T>
  void commit(T* out) {
    const std::vector<std::byte>& raw = values[next++];
    if (!raw.empty()) std::memcpy(out, raw.data(), raw.size());
  }
};

struct buffer_stage {
  const io::safetensors& file;
  staged_values& staged;
  template <class Scalar>
  void operator()(const std::string& name, Scalar*, const parameter_spec& spec) const {
    staged.read<Scalar>(file, name, spec.shape(), spec.size());
  }
  void operator()(const std::string& name, std::int64_t&) const {
    staged.read<std::int64_t>(file, name, {}, 1);
  }
};

struct buffer_commit {
  staged_values& staged;
  template <class Scalar>
  void operator()(const std::string&, Scalar* data, const parameter_spec&) const {
    staged.commit(data);
  }
  void operator()(const std::string&, std::int64_t& counter) const { staged.commit(&counter); }
};

}  // namespace detail

/// Adds every parameter and buffer of `m` to `file` as "<prefix><name>".
template <class Model>
void store_model(io::safetensors& file, const std::string& prefix, Model& m) {
  using scalar = typename Model::scalar;
  m.visit_parameters(
      [&](const std::string& name, scalar* value, scalar*, const parameter_spec& spec) {
        file.add<scalar>(prefix + name, spec.shape(), std::span<const scalar>(value, spec.size()));
      });
  m.visit_buffers([&](const std::string& name, auto&&... buffer) {
    detail::buffer_store{file}(prefix + name, buffer...);
  });
}

/// Checks that `file` holds every parameter and buffer of `m` under
/// "<prefix><name>" with the model's shapes; throws file_error naming the
/// file and the first missing or misshapen tensor.
template <class Model>
void check_model(const io::safetensors& file, const std::string& prefix, Model& m) {
  using scalar = typename Model::scalar;
  m.visit_parameters([&](const std::string& name, scalar*, scalar*, const parameter_spec& spec) {
    detail::check_tensor_shape(file, prefix + name, spec.shape());
  });
  m.visit_buffers([&](const std::string& name, auto&&... buffer) {
    detail::buffer_check{file}(prefix + name, buffer...);
  });
}

namespace detail {

/// Checks `file` against `m` as check_model does and converts every
/// parameter and buffer into a staged copy, leaving `m` unchanged. A caller
/// that loads several models and other state from one file stages them all
/// before it commits any, so that a failure leaves everything unchanged.
template <class Model>
staged_values stage_model(const io::safetensors& file, const std::string& prefix, Model& m) {
  using scalar = typename Model::scalar;
  check_model(file, prefix, m);
  staged_values staged;
  m.visit_parameters([&](const std::string& name, scalar*, scalar*, const parameter_spec& spec) {
    staged.read<scalar>(file, prefix + name, spec.shape(), spec.size());
  });
  m.visit_buffers([&](const std::string& name, auto&&... buffer) {
    buffer_stage{file, staged}(prefix + name, buffer...);
  });
  return staged;
}

/// Copies the values that stage_model staged for `m` into `m`.
template <class Model>
void commit_model(staged_values& staged, Model& m) {
  using scalar = typename Model::scalar;
  m.visit_parameters([&](const std::string&, scalar* value, scalar*, const parameter_spec&) {
    staged.commit(value);
  });
  m.visit_buffers(
      [&](const std::string& name, auto&&... buffer) { buffer_commit{staged}(name, buffer...); });
}

}  // namespace detail

/// Reads every parameter and buffer of `m` from `file`. Every shape is
/// checked and every value converted before `m` changes, so a file that
/// does not fit leaves `m` unchanged.
template <class Model>
void load_model(const io::safetensors& file, const std::string& prefix, Model& m) {
  detail::staged_values staged = detail::stage_model(file, prefix, m);
  detail::commit_model(staged, m);
}

/// Writes a model alone, for example a trained generator, as a safetensors
/// file with PyTorch's state_dict names, atomically.
template <class Model>
void save_model(const std::filesystem::path& path, Model& m,
                const std::map<std::string, std::string>& metadata = {}) {
  io::safetensors file;
  for (const auto& [key, value] : metadata) file.set_metadata(key, value);
  store_model(file, "", m);
  file.save(path);
}

/// Reads a model written by save_model (or by PyTorch under the same names).
template <class Model>
void load_model(const std::filesystem::path& path, Model& m) {
  load_model(io::safetensors::load(path), "", m);
}

}  // namespace advgan

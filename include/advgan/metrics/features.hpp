#pragma once
// Feature matrices, the input of every metric in this folder: one row per
// sample (an embedding of an image, or its class probabilities), one column
// per feature, stored row-major in double.

#include <array>        // std::array
#include <cstddef>      // std::size_t
#include <limits>       // std::numeric_limits
#include <string_view>  // std::string_view
#include <utility>      // std::move
#include <vector>       // std::vector

#include <xtensor-blas/xblas.hpp>  // xt::blas::gemm, cxxblas::syrk
#include <xtensor/xadapt.hpp>      // xt::adapt

#include "advgan/core/error.hpp"
#include "advgan/core/finite.hpp"

namespace advgan {

/// A rows x cols matrix of features in row-major order: the feature in row r,
/// column c is values[r * cols + c].
struct feature_matrix {
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::vector<double> values;

  feature_matrix() = default;

  /// Creates a row_count x col_count matrix of zeros.
  feature_matrix(std::size_t row_count, std::size_t col_count)
      : rows(row_count), cols(col_count), values(row_count * col_count) {}

  /// Takes `data` in row-major order. Throws shape_error unless `data`
  /// contains row_count * col_count values.
  feature_matrix(std::size_t row_count, std::size_t col_count, std::vector<double> data)
      : rows(row_count), cols(col_count), values(std::move(data)) {
    if (values.size() != rows * cols) {
      throw shape_error("feature_matrix",
                        detail::concat(rows, " x ", cols, " (", rows * cols, " values)"),
                        detail::concat(values.size(), " values"));
    }
  }

  double operator()(std::size_t row, std::size_t col) const { return values[row * cols + col]; }
  double& operator()(std::size_t row, std::size_t col) { return values[row * cols + col]; }

  /// Returns a pointer to the first of the `cols` features of `row`.
  const double* row_data(std::size_t row) const { return values.data() + row * cols; }
};

/// Throws argument_error at the first NaN or infinity in `features`, naming
/// `set_name`, the row, the column and the value, as in "NaN feature in set B
/// at row 3, column 7". Throws shape_error first if the public fields were
/// assigned so that values.size() != rows * cols.
inline void check_finite(const feature_matrix& features, std::string_view set_name) {
  if (features.values.size() != features.rows * features.cols) {
    throw shape_error(detail::concat("feature_matrix of ", set_name),
                      detail::concat(features.rows, " x ", features.cols, " (",
                                     features.rows * features.cols, " values)"),
                      detail::concat(features.values.size(), " values"));
  }
  for (std::size_t index = 0; index < features.values.size(); ++index) {
    const double value = features.values[index];
    if (detail::is_finite(value)) continue;  // a bit test, which -ffast-math keeps
    const std::size_t row = index / features.cols;
    const std::size_t col = index % features.cols;
    if (detail::is_nan(value)) {
      throw argument_error(
          detail::concat("NaN feature in ", set_name, " at row ", row, ", column ", col));
    }
    throw argument_error(detail::concat("infinite feature ", value, " in ", set_name, " at row ",
                                        row, ", column ", col));
  }
}

namespace detail {

// Throws argument_error unless a matrix dimension fits the int that BLAS and
// LAPACK take.
inline void check_blas_size(std::size_t size, std::string_view what) {
  if (size > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw argument_error(concat(what, " = ", size, " exceeds the BLAS index limit ",
                                std::numeric_limits<int>::max()));
  }
}

// Computes out = op(a) * op(b) by one BLAS gemm on row-major buffers, where
// op transposes when the flag is set. a is a_rows x a_cols and b is
// b_rows x b_cols as stored; out must hold the rows x cols of the product.
inline void gemm_row_major(const double* a, std::size_t a_rows, std::size_t a_cols,
                           bool transpose_a, const double* b, std::size_t b_rows,
                           std::size_t b_cols, bool transpose_b, double* out) {
  for (const std::size_t size : {a_rows, a_cols, b_rows, b_cols}) {
    check_blas_size(size, "gemm size");
  }
  const std::size_t out_rows = transpose_a ? a_cols : a_rows;
  const std::size_t out_cols = transpose_b ? b_rows : b_cols;
  auto a_view =
      xt::adapt(a, a_rows * a_cols, xt::no_ownership(), std::array<std::size_t, 2>{a_rows, a_cols});
  auto b_view =
      xt::adapt(b, b_rows * b_cols, xt::no_ownership(), std::array<std::size_t, 2>{b_rows, b_cols});
  auto out_view = xt::adapt(out, out_rows * out_cols, xt::no_ownership(),
                            std::array<std::size_t, 2>{out_rows, out_cols});
  xt::blas::gemm(a_view, b_view, out_view, transpose_a, transpose_b);
}

// Computes the upper triangle (j >= i) of out = op(a) * op(a)^T by one BLAS
// syrk on a row-major a_rows x a_cols buffer, where op transposes when
// `transpose` is set; the strict lower triangle of out is left unchanged.
inline void syrk_upper_row_major(const double* a, std::size_t a_rows, std::size_t a_cols,
                                 bool transpose, double* out) {
  check_blas_size(a_rows, "syrk size");
  check_blas_size(a_cols, "syrk size");
  const auto n = static_cast<int>(transpose ? a_cols : a_rows);
  const auto k = static_cast<int>(transpose ? a_rows : a_cols);
  cxxblas::syrk<int>(cxxblas::StorageOrder::RowMajor, cxxblas::StorageUpLo::Upper,
                     transpose ? cxxblas::Transpose::Trans : cxxblas::Transpose::NoTrans, n, k, 1.0,
                     a, static_cast<int>(a_cols), 0.0, out, n);
}

}  // namespace detail

}  // namespace advgan

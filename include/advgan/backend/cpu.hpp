#pragma once
// The CPU backend: xtensor tensors (NCHW, row-major), GEMM through
// xtensor-blas onto OpenBLAS, and OpenMP loops.
//
// Layers see only the static functions of `cpu<Scalar>`; none of them
// includes an xtensor header, so another backend with the same functions
// (a CUDA one) runs the same layer code.

#include <omp.h>

#include <algorithm>  // std::fill_n, std::copy_n
#include <cmath>      // std::sqrt
#include <concepts>   // std::floating_point
#include <cstddef>    // std::size_t

#include <xtensor-blas/xblas.hpp>
#include <xtensor/xtensor.hpp>

#include "advgan/core/error.hpp"
#include "advgan/core/philox.hpp"
#include "advgan/core/shape.hpp"

extern "C" {
// OpenBLAS's own thread control; cblas.h of the reference BLAS lacks them.
void openblas_set_num_threads(int threads);
int openblas_get_num_threads(void);
}

namespace advgan {

/// Sets the thread count of both OpenMP (advgan's own loops) and OpenBLAS
/// (GEMM). Both run one after the other, never at once, so the two pools
/// never compete for the same cores.
inline void set_threads(int threads) {
  if (threads < 1) throw argument_error(detail::concat("thread count must be >= 1, got ", threads));
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
}

/// Returns the thread counts that OpenMP and OpenBLAS will use.
inline int openmp_threads() {
  return omp_get_max_threads();
}
inline int openblas_threads() {
  return openblas_get_num_threads();
}

/// The CPU backend policy for `float` or `double`.
template <std::floating_point Scalar>
struct cpu {
  using scalar = Scalar;
  using tensor = xt::xtensor<Scalar, 4>;

  static constexpr const char* name = "cpu";

  // -- Tensors ---------------------------------------------------------------

  /// Resizes `t` to (n, c, h, w). The storage is reused when the element
  /// count is unchanged, so a fixed batch size allocates only once.
  static void resize(tensor& t, std::size_t n, std::size_t c, std::size_t h, std::size_t w) {
    const extents e{n, c, h, w};
    if (std::equal(e.begin(), e.end(), t.shape().begin())) return;
    t.resize({n, c, h, w});
  }
  static void resize(tensor& t, const extents& e) { resize(t, e[0], e[1], e[2], e[3]); }

  static extents shape(const tensor& t) {
    return {t.shape()[0], t.shape()[1], t.shape()[2], t.shape()[3]};
  }
  static std::size_t size(const tensor& t) { return t.size(); }
  static Scalar* data(tensor& t) { return t.data(); }
  static const Scalar* data(const tensor& t) { return t.data(); }

  static void fill(Scalar* x, std::size_t n, Scalar value) { std::fill_n(x, n, value); }
  static void copy(const Scalar* from, std::size_t n, Scalar* to) { std::copy_n(from, n, to); }

  // -- Loops -----------------------------------------------------------------

  /// Calls f(i) for i in [0, n), split across the OpenMP threads. Iterations
  /// must be independent. Short loops stay on one thread.
  template <class Function>
  static void parallel_for(std::size_t n, Function&& f, std::size_t grain = 4096) {
    if (n < grain || omp_get_max_threads() == 1) {
      for (std::size_t i = 0; i < n; ++i) f(i);
      return;
    }
    const auto count = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < count; ++i) f(static_cast<std::size_t>(i));
  }

  // -- Linear algebra --------------------------------------------------------

  /// C = alpha * op(A) * op(B) + beta * C with row-major operands, where
  /// op(A) is m x k, op(B) is k x n and C is m x n.
  static void gemm(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k,
                   Scalar alpha, const Scalar* a, std::size_t lda, const Scalar* b, std::size_t ldb,
                   Scalar beta, Scalar* c, std::size_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
      return;
    }
    using index = xt::blas_index_t;
    cxxblas::gemm<index>(cxxblas::StorageOrder::RowMajor,
                         transpose_a ? cxxblas::Transpose::Trans : cxxblas::Transpose::NoTrans,
                         transpose_b ? cxxblas::Transpose::Trans : cxxblas::Transpose::NoTrans,
                         static_cast<index>(m), static_cast<index>(n), static_cast<index>(k), alpha,
                         a, static_cast<index>(lda), b, static_cast<index>(ldb), beta, c,
                         static_cast<index>(ldc));
  }

  /// Lowers one image (channels x height x width) to columns for a
  /// convolution: col[(c * kh + i) * kw + j][oy * ow + ox] =
  /// x[c][oy * s - p + i][ox * s - p + j], or 0 where that falls in the padding.
  static void im2col(const Scalar* x, std::size_t channels, std::size_t height, std::size_t width,
                     std::size_t kernel, std::size_t stride, std::size_t padding, Scalar* col) {
    const std::size_t out_h = size_rule::conv_size(height, kernel, stride, padding);
    const std::size_t out_w = size_rule::conv_size(width, kernel, stride, padding);
    for (std::size_t c = 0; c < channels; ++c)
      for (std::size_t i = 0; i < kernel; ++i)
        for (std::size_t j = 0; j < kernel; ++j) {
          Scalar* row = col + ((c * kernel + i) * kernel + j) * out_h * out_w;
          for (std::size_t oy = 0; oy < out_h; ++oy) {
            const auto y =
                static_cast<std::ptrdiff_t>(oy * stride + i) - static_cast<std::ptrdiff_t>(padding);
            Scalar* out = row + oy * out_w;
            if (y < 0 || y >= static_cast<std::ptrdiff_t>(height)) {
              std::fill_n(out, out_w, Scalar(0));
              continue;
            }
            const Scalar* in = x + (c * height + static_cast<std::size_t>(y)) * width;
            for (std::size_t ox = 0; ox < out_w; ++ox) {
              const auto xx = static_cast<std::ptrdiff_t>(ox * stride + j) -
                              static_cast<std::ptrdiff_t>(padding);
              out[ox] = (xx < 0 || xx >= static_cast<std::ptrdiff_t>(width))
                            ? Scalar(0)
                            : in[static_cast<std::size_t>(xx)];
            }
          }
        }
  }

  /// The adjoint of im2col: adds every column entry back onto the image
  /// position it was read from (x += col2im(col)).
  static void col2im(const Scalar* col, std::size_t channels, std::size_t height, std::size_t width,
                     std::size_t kernel, std::size_t stride, std::size_t padding, Scalar* x) {
    const std::size_t out_h = size_rule::conv_size(height, kernel, stride, padding);
    const std::size_t out_w = size_rule::conv_size(width, kernel, stride, padding);
    for (std::size_t c = 0; c < channels; ++c)
      for (std::size_t i = 0; i < kernel; ++i)
        for (std::size_t j = 0; j < kernel; ++j) {
          const Scalar* row = col + ((c * kernel + i) * kernel + j) * out_h * out_w;
          for (std::size_t oy = 0; oy < out_h; ++oy) {
            const auto y =
                static_cast<std::ptrdiff_t>(oy * stride + i) - static_cast<std::ptrdiff_t>(padding);
            if (y < 0 || y >= static_cast<std::ptrdiff_t>(height)) continue;
            Scalar* out = x + (c * height + static_cast<std::size_t>(y)) * width;
            const Scalar* in = row + oy * out_w;
            for (std::size_t ox = 0; ox < out_w; ++ox) {
              const auto xx = static_cast<std::ptrdiff_t>(ox * stride + j) -
                              static_cast<std::ptrdiff_t>(padding);
              if (xx >= 0 && xx < static_cast<std::ptrdiff_t>(width))
                out[static_cast<std::size_t>(xx)] += in[ox];
            }
          }
        }
  }

  // -- Reductions ------------------------------------------------------------

  /// Returns the sum of n values, accumulated in double.
  static double sum(const Scalar* x, std::size_t n) {
    double total = 0;
    for (std::size_t i = 0; i < n; ++i) total += x[i];
    return total;
  }

  /// Returns the dot product of two length-n arrays, accumulated in double.
  static double dot(const Scalar* x, const Scalar* y, std::size_t n) {
    double total = 0;
    for (std::size_t i = 0; i < n; ++i) total += static_cast<double>(x[i]) * y[i];
    return total;
  }

  /// Returns the index of the first NaN or infinity, or n if all are finite.
  static std::size_t first_non_finite(const Scalar* x, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(x[i])) return i;
    return n;
  }

  // -- Random fills ----------------------------------------------------------

  /// Fills x with uniform values in [low, high). Values are drawn in order
  /// from `rng`, so the same seed and offset give the same tensor on every
  /// backend.
  static void fill_uniform(Scalar* x, std::size_t n, philox& rng, double low, double high) {
    for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<Scalar>(rng.uniform(low, high));
  }

  /// Fills x with normal values of the given mean and standard deviation.
  static void fill_normal(Scalar* x, std::size_t n, philox& rng, double mean, double stddev) {
    for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<Scalar>(rng.normal(mean, stddev));
  }
};

}  // namespace advgan

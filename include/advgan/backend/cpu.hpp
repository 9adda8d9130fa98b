#pragma once
// The CPU backend: xtensor tensors (NCHW, row-major), GEMM through
// xtensor-blas onto OpenBLAS, and OpenMP loops.
//
// Layers see only the static functions of `cpu<Scalar>`; none of them
// includes an xtensor header, so another backend with the same functions
// (a CUDA one) runs the same layer code.

#include <omp.h>

#include <algorithm>  // std::copy, std::copy_n, std::fill, std::fill_n, std::min
#include <array>      // std::array
#include <bit>        // std::bit_cast
#include <concepts>   // std::floating_point
#include <cstddef>    // std::size_t, std::ptrdiff_t
#include <utility>    // std::index_sequence
#include <vector>     // std::vector

#include <xtensor-blas/xblas.hpp>
#include <xtensor/xtensor.hpp>

#include "advgan/backend/thin_gemm.hpp"
#include "advgan/core/error.hpp"
#include "advgan/core/finite.hpp"
#include "advgan/core/philox.hpp"
#include "advgan/core/shape.hpp"

extern "C" {
// OpenBLAS's own thread control; cblas.h of the reference BLAS lacks them.
void openblas_set_num_threads(int threads);
int openblas_get_num_threads(void);
}

namespace advgan {

/// Sets the thread count of both OpenMP (advgan's own loops) and OpenBLAS
/// (GEMM). advgan's layers run their GEMMs on the OpenMP threads, with
/// OpenBLAS set to one thread meanwhile. OpenBLAS's own threads then serve
/// only GEMMs that the main thread runs between parallel regions, so the
/// two thread pools never run at once.
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

namespace detail {

/// Work (m * n * k) from which gemm splits a product across OpenMP threads.
/// Below it the product takes a few microseconds, about what starting the
/// threads costs.
inline constexpr double gemm_split_work = 1 << 18;

/// Whether gemm splits large products across OpenMP threads itself (true)
/// or leaves the threading to OpenBLAS (false). The benchmarks switch it to
/// compare the two.
inline bool gemm_split_enabled = true;

/// Whether convolution layers run their chunks of samples as parallel
/// tasks (true) or one after another with each step split across the
/// threads (false). The benchmarks switch it to compare the two.
inline bool task_parallel_enabled = true;

/// Maximum number of threads that parallel_sum_tasks uses.
inline constexpr int max_task_threads = 64;

/// Element count from which the copy loops (im2col, col2im, layout
/// changes) run on all OpenMP threads.
inline constexpr std::size_t parallel_copy_elements = 1 << 15;

/// Sets OpenBLAS to one thread for the lifetime of the object, then restores
/// the count, for GEMMs that run on OpenMP threads.
class openblas_single_thread {
 public:
  openblas_single_thread() : saved_(openblas_get_num_threads()) {
    if (saved_ != 1) openblas_set_num_threads(1);
  }
  ~openblas_single_thread() {
    if (saved_ != 1) openblas_set_num_threads(saved_);
  }
  openblas_single_thread(const openblas_single_thread&) = delete;
  openblas_single_thread& operator=(const openblas_single_thread&) = delete;

 private:
  int saved_;
};

/// Phase split of an image column offset for a stride: offset = stride *
/// shift + phase with 0 <= phase < stride.
struct column_phase {
  std::size_t phase;
  std::ptrdiff_t shift;
};

constexpr column_phase phase_of(std::ptrdiff_t offset, std::size_t stride) {
  const auto s = static_cast<std::ptrdiff_t>(stride);
  const std::ptrdiff_t phase = (offset % s + s) % s;
  return {static_cast<std::size_t>(phase), (offset - phase) / s};
}

/// The input columns that kernel column j reads in an image row. Output
/// columns [first, last) read input column ox * stride + offset, which lies
/// inside the image, and that column is entry ox + shift of column phase
/// `phase`.
struct column_tap {
  std::size_t first = 0;
  std::size_t last = 0;
  std::ptrdiff_t offset = 0;
  std::size_t phase = 0;
  std::ptrdiff_t shift = 0;
};

constexpr column_tap make_tap(std::size_t width, std::size_t out_w, std::size_t stride,
                              std::size_t padding, std::size_t j) {
  column_tap t;
  t.offset = static_cast<std::ptrdiff_t>(j) - static_cast<std::ptrdiff_t>(padding);
  const auto signed_stride = static_cast<std::ptrdiff_t>(stride);
  const std::size_t first =
      t.offset >= 0 ? 0 : static_cast<std::size_t>((-t.offset + signed_stride - 1) / signed_stride);
  const std::ptrdiff_t last_input = static_cast<std::ptrdiff_t>(width) - 1 - t.offset;
  t.last = last_input < 0
               ? 0
               : std::min(out_w, static_cast<std::size_t>(last_input / signed_stride) + 1);
  t.first = std::min(first, t.last);
  const column_phase p = phase_of(t.offset, stride);
  t.phase = p.phase;
  t.shift = p.shift;
  return t;
}

/// Sizes of a convolution over one image plane, known at run time, and
/// which kernel taps fall inside the image. fixed_conv_geometry has the same
/// members as compile-time constants.
struct conv_geometry {
  static constexpr bool fixed = false;
  std::size_t height, width, kernel, stride, padding;
  std::size_t out_h, out_w;
  std::size_t area;         // out_h * out_w, the columns of one sample
  std::size_t image;        // height * width, the values of one input plane
  std::size_t phase_width;  // columns of one column phase: ceil(width / stride)

  conv_geometry(std::size_t h, std::size_t w, std::size_t k, std::size_t s, std::size_t p)
      : height(h),
        width(w),
        kernel(k),
        stride(s),
        padding(p),
        out_h(size_rule::conv_size(h, k, s, p)),
        out_w(size_rule::conv_size(w, k, s, p)),
        area(out_h * out_w),
        image(h * w),
        phase_width((w + s - 1) / s) {
    for (std::size_t j = 0; j < std::min(kernel, tabulated_taps); ++j)
      taps_[j] = make_tap(width, out_w, stride, padding, j);
  }

  /// Input row of output row oy and kernel row i; negative or >= height in
  /// the padding.
  std::ptrdiff_t input_row(std::size_t oy, std::size_t i) const {
    return static_cast<std::ptrdiff_t>(oy * stride + i) - static_cast<std::ptrdiff_t>(padding);
  }

  /// Returns the columns that kernel column j reads. Kernels up to
  /// tabulated_taps wide look them up in a table, because the loops ask once
  /// per image row.
  column_tap tap(std::size_t j) const {
    return j < tabulated_taps ? taps_[j] : make_tap(width, out_w, stride, padding, j);
  }

 private:
  static constexpr std::size_t tabulated_taps = 16;
  std::array<column_tap, tabulated_taps> taps_{};
};

/// A convolution geometry fixed at compile time, as the layers have it, so
/// the compiler unrolls the short loops over kernel taps and image rows.
template <std::size_t Height, std::size_t Width, std::size_t Kernel, std::size_t Stride,
          std::size_t Padding>
struct fixed_conv_geometry {
  static constexpr bool fixed = true;
  static constexpr std::size_t height = Height, width = Width, kernel = Kernel, stride = Stride,
                               padding = Padding;
  static constexpr std::size_t out_h = size_rule::conv_size(Height, Kernel, Stride, Padding);
  static constexpr std::size_t out_w = size_rule::conv_size(Width, Kernel, Stride, Padding);
  static constexpr std::size_t area = out_h * out_w;
  static constexpr std::size_t image = Height * Width;
  static constexpr std::size_t phase_width = (Width + Stride - 1) / Stride;

  static constexpr std::ptrdiff_t input_row(std::size_t oy, std::size_t i) {
    return static_cast<std::ptrdiff_t>(oy * Stride + i) - static_cast<std::ptrdiff_t>(Padding);
  }
  static constexpr column_tap tap(std::size_t j) {
    return make_tap(Width, out_w, Stride, Padding, j);
  }
};

/// Sizes of a convolution with a rectangular kernel, stride and padding
/// (kernel_h x kernel_w, and so on), known at run time. The square-kernel
/// geometries above serve conv2d; this one serves conv2d_rect.
struct rect_conv_geometry {
  std::size_t height, width;
  std::size_t kernel_h, kernel_w;
  std::size_t stride_h, stride_w;
  std::size_t padding_h, padding_w;
  std::size_t out_h, out_w;
  std::size_t area;   // out_h * out_w, the columns of one sample
  std::size_t image;  // height * width, the values of one input plane

  constexpr rect_conv_geometry(std::size_t h, std::size_t w, std::size_t kh, std::size_t kw,
                               std::size_t sh, std::size_t sw, std::size_t ph, std::size_t pw)
      : height(h),
        width(w),
        kernel_h(kh),
        kernel_w(kw),
        stride_h(sh),
        stride_w(sw),
        padding_h(ph),
        padding_w(pw),
        out_h(size_rule::conv_size(h, kh, sh, ph)),
        out_w(size_rule::conv_size(w, kw, sw, pw)),
        area(out_h * out_w),
        image(h * w) {}

  /// Input row of output row oy and kernel row i; negative or >= height in
  /// the padding.
  constexpr std::ptrdiff_t input_row(std::size_t oy, std::size_t i) const {
    return static_cast<std::ptrdiff_t>(oy * stride_h + i) - static_cast<std::ptrdiff_t>(padding_h);
  }

  /// Returns the output columns that kernel column j reads inside the image.
  constexpr column_tap tap(std::size_t j) const {
    return make_tap(width, out_w, stride_w, padding_w, j);
  }
};

/// The column tap of kernel column J of a fixed geometry as a type, so that
/// its members are constants inside the loops that use them.
template <class Geometry, std::size_t J>
struct fixed_column_tap {
  static constexpr column_tap value = Geometry::tap(J);
  static constexpr std::size_t first = value.first;
  static constexpr std::size_t last = value.last;
  static constexpr std::ptrdiff_t offset = value.offset;
  static constexpr std::size_t phase = value.phase;
  static constexpr std::ptrdiff_t shift = value.shift;
};

/// Calls f(j, tap) for every kernel column j; for a fixed geometry tap is a
/// fixed_column_tap and the calls are unrolled.
template <class Geometry, class Function>
void for_each_column_tap(const Geometry& g, Function&& f) {
  if constexpr (Geometry::fixed) {
    [&]<std::size_t... J>(std::index_sequence<J...>) {
      (f(J, fixed_column_tap<Geometry, J>{}), ...);
    }
    (std::make_index_sequence<Geometry::kernel>{});
  } else {
    for (std::size_t j = 0; j < g.kernel; ++j) f(j, g.tap(j));
  }
}

}  // namespace detail

/// The CPU backend policy for `float` or `double`.
template <std::floating_point Scalar>
struct cpu {
  using scalar = Scalar;
  using tensor = xt::xtensor<Scalar, 4>;

  static constexpr const char* name = "cpu";

  /// Maximum size, in values, of the im2col matrix (and of the channel-major
  /// copy) that a convolution layer lowers at once. A larger batch goes in
  /// chunks of samples, one parallel task per chunk. 2 MiB of float stays in
  /// the L3 cache between the lowering and the GEMM that reads it.
  ///
  /// A smaller budget makes OpenBLAS pack the weights once more per chunk:
  /// on the reference DCGAN (AMD EPYC, OpenBLAS 0.3.21) the packing share
  /// was 10.2% at 2^19 values, 9.6% at 2^20 and 8.9% at 2^21. At 2^19 the
  /// first discriminator layer comes in two chunks at batch 64, so two
  /// threads both lower it. The 2-thread iteration then took 263.5 ms
  /// against 268.5 ms at 2^20 (medians of 6 alternating runs), and peak
  /// memory fell by 5 MiB.
  static constexpr std::size_t lowering_budget = std::size_t{1} << 19;

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

  /// Sets n values to `value`. Long arrays, such as a model's gradients, are
  /// split across the OpenMP threads, as in copy.
  static void fill(Scalar* x, std::size_t n, Scalar value) {
    parallel_blocks(
        n, [=](std::size_t begin, std::size_t end) { std::fill(x + begin, x + end, value); },
        parallel_fill_elements);
  }
  static void copy(const Scalar* from, std::size_t n, Scalar* to) {
    parallel_blocks(
        n,
        [=](std::size_t begin, std::size_t end) {
          std::copy(from + begin, from + end, to + begin);
        },
        parallel_fill_elements);
  }

  /// Returns scratch memory for at least `count` values. Convolution layers
  /// keep their im2col matrices and layout copies here, which live only
  /// within one forward or backward call, so all layers that run on one
  /// thread share one buffer. The buffer only grows, so once the largest
  /// request has been seen no call allocates. The memory stays valid until
  /// the next call on the same thread.
  static Scalar* workspace(std::size_t count) {
    thread_local std::vector<Scalar> buffer;
    if (buffer.size() < count) buffer.resize(count);
    return buffer.data();
  }

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

  /// Calls f(begin, end) on contiguous blocks that cover [0, n), one block
  /// per OpenMP thread, so the body can run a vectorised inner loop. Loops
  /// shorter than `grain` run as one block on the calling thread.
  template <class Function>
  static void parallel_blocks(std::size_t n, Function&& f, std::size_t grain = 16384) {
    const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (n < grain || threads == 1) {
      f(std::size_t{0}, n);
      return;
    }
#pragma omp parallel num_threads(threads)
    {
      // Blocks of whole cache lines, so two threads never write to one line.
      const auto [begin, end] =
          detail::thread_share(n, static_cast<std::size_t>(omp_get_num_threads()),
                               static_cast<std::size_t>(omp_get_thread_num()));
      if (begin < end) f(begin, end);
    }
  }

  /// Calls task(i) for i in [0, count), each call on one OpenMP thread and
  /// the calls handed out one at a time, so a thread that gets less of the
  /// machine takes fewer tasks. Tasks must write disjoint outputs, and then
  /// the results do not depend on which thread ran which task. OpenBLAS runs
  /// single-threaded meanwhile, so each task can run its own GEMMs. A
  /// convolution layer processes one chunk of samples per task: lowering,
  /// GEMM and layout copy on one thread, with no barrier between them.
  /// NOTE: an exception that leaves a task inside the parallel region ends
  /// the program (std::terminate), std::bad_alloc from a thread's first
  /// workspace request included.
  template <class Task>
  static void parallel_tasks(std::size_t count, Task&& task) {
    const int threads = task_threads(count);
    if (threads == 1) {
      for (std::size_t i = 0; i < count; ++i) task(i);
      return;
    }
    const detail::openblas_single_thread single_thread;
    const auto task_count = static_cast<std::ptrdiff_t>(count);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (std::ptrdiff_t i = 0; i < task_count; ++i) task(static_cast<std::size_t>(i));
  }

  /// Runs tasks as parallel_tasks does, for tasks that each add a share to
  /// one sum of `size` values, such as a weight gradient: task(i, partial,
  /// beta) sets partial = beta * partial + its share. The first thread adds
  /// onto `sum` itself. Every other thread builds a partial sum in memory of
  /// its own, and these are added to `sum` once all tasks have run.
  ///
  /// Unlike parallel_tasks, thread t runs tasks t, t + T, t + 2T, ... in
  /// order, and the partial sums are added in thread order, so the sum is
  /// the same bit for bit on every run with the same thread count. Different
  /// thread counts round differently.
  template <class Task>
  static void parallel_sum_tasks(std::size_t count, Scalar* sum, std::size_t size, Task&& task) {
    const int threads = task_threads(count);
    if (threads == 1) {
      for (std::size_t i = 0; i < count; ++i) task(i, sum, Scalar(1));
      return;
    }
    const detail::openblas_single_thread single_thread;
    std::array<Scalar*, detail::max_task_threads> partials{};
    const auto task_count = static_cast<std::ptrdiff_t>(count);
#pragma omp parallel num_threads(threads)
    {
      const int thread = omp_get_thread_num();
      Scalar* partial = thread == 0 ? sum : nullptr;
#pragma omp for schedule(static, 1)
      for (std::ptrdiff_t i = 0; i < task_count; ++i) {
        // The first task of another thread overwrites its partial sum (beta
        // = 0), so the sum needs no zeroing.
        const bool first = partial == nullptr;
        if (first) partial = partial_sum_buffer(size);
        task(static_cast<std::size_t>(i), partial, first ? Scalar(0) : Scalar(1));
      }
      partials[static_cast<std::size_t>(thread)] = thread == 0 ? nullptr : partial;
#pragma omp barrier
      // Each thread adds its own slice of every partial sum to `sum`.
      const auto parts = static_cast<std::size_t>(omp_get_num_threads());
      const auto [begin, end] = detail::thread_share(size, parts, static_cast<std::size_t>(thread));
      for (std::size_t t = 1; t < parts; ++t) {
        const Scalar* values = partials[t];
        if (values == nullptr) continue;
        for (std::size_t j = begin; j < end; ++j) sum[j] += values[j];
      }
    }
  }

  // -- Linear algebra --------------------------------------------------------

  /// C = alpha * op(A) * op(B) + beta * C with row-major operands, where
  /// op(A) is m x k, op(B) is k x n and C is m x n.
  ///
  /// With more than one OpenMP thread and enough work, the product is split
  /// into one block of rows or columns of C per thread, and each thread runs
  /// OpenBLAS single-threaded on its block. All of advgan's parallel work
  /// then runs on the one OpenMP thread pool, and OpenBLAS's own threads
  /// stay asleep instead of spinning on the cores that the OpenMP loops use.
  /// Inside a parallel region gemm calls OpenBLAS directly.
  static void gemm(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k,
                   Scalar alpha, const Scalar* a, std::size_t lda, const Scalar* b, std::size_t ldb,
                   Scalar beta, Scalar* c, std::size_t ldc) {
    if (m == 0 || n == 0) return;
    // As in BLAS, alpha = 0 leaves A and B unread, so NaN there does not reach C.
    if (k == 0 || alpha == 0) {
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
      return;
    }
#ifdef ADVGAN_THIN_GEMM
    if constexpr (std::same_as<Scalar, float>) {
      if (detail::thin_gemm_suits(transpose_b, m, n)) {
        detail::thin_gemm(transpose_a, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                          detail::gemm_split_work);
        return;
      }
    }
#endif
    const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
    if (threads == 1 || work < detail::gemm_split_work || !detail::gemm_split_enabled) {
      blas_gemm(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
    const detail::openblas_single_thread single_thread;
    // Split the longer side of C in multiples of 16, so that a split of the
    // columns gives each thread whole cache lines of C.
    const bool split_rows = m > n;
    const std::size_t length = split_rows ? m : n;
#pragma omp parallel num_threads(threads)
    {
      const auto [begin, end] =
          detail::thread_share(length, static_cast<std::size_t>(omp_get_num_threads()),
                               static_cast<std::size_t>(omp_get_thread_num()));
      if (begin < end && split_rows) {
        blas_gemm(transpose_a, transpose_b, end - begin, n, k, alpha,
                  a + (transpose_a ? begin : begin * lda), lda, b, ldb, beta, c + begin * ldc, ldc);
      } else if (begin < end) {
        blas_gemm(transpose_a, transpose_b, m, end - begin, k, alpha, a, lda,
                  b + (transpose_b ? begin * ldb : begin), ldb, beta, c + begin, ldc);
      }
    }
  }

  /// Lowers one image (channels x height x width) to columns for a
  /// convolution: col[(c * kh + i) * kw + j][oy * ow + ox] =
  /// x[c][oy * s - p + i][ox * s - p + j], or 0 where that falls in the padding.
  static void im2col(const Scalar* x, std::size_t channels, std::size_t height, std::size_t width,
                     std::size_t kernel, std::size_t stride, std::size_t padding, Scalar* col) {
    im2col_batch(x, 1, channels, height, width, kernel, stride, padding, col);
  }

  /// The adjoint of im2col: adds every column entry back onto the image
  /// position it was read from (x += col2im(col)).
  static void col2im(const Scalar* col, std::size_t channels, std::size_t height, std::size_t width,
                     std::size_t kernel, std::size_t stride, std::size_t padding, Scalar* x) {
    const detail::conv_geometry g(height, width, kernel, stride, padding);
    for (std::size_t c = 0; c < channels; ++c)
      raise_plane(col, g.area, 0, c, g, x + c * g.image, true);
  }

  /// Lowers `count` images (each channels x height x width, NCHW) to one
  /// matrix with channels * kernel * kernel rows and count * oh * ow columns:
  /// col[(c * kernel + i) * kernel + j][n * oh * ow + oy * ow + ox] =
  /// x[n][c][oy * s - p + i][ox * s - p + j], or 0 in the padding. One GEMM
  /// with this matrix convolves all the samples.
  static void im2col_batch(const Scalar* x, std::size_t count, std::size_t channels,
                           std::size_t height, std::size_t width, std::size_t kernel,
                           std::size_t stride, std::size_t padding, Scalar* col) {
    lower_batch(x, count, channels, detail::conv_geometry(height, width, kernel, stride, padding),
                col);
  }

  /// Lowers like im2col_batch, for a geometry fixed at compile time, as the
  /// layers have it, so the short loops over kernel taps and rows unroll.
  template <std::size_t Height, std::size_t Width, std::size_t Kernel, std::size_t Stride,
            std::size_t Padding>
  static void im2col_batch(const Scalar* x, std::size_t count, std::size_t channels, Scalar* col) {
    lower_batch(x, count, channels,
                detail::fixed_conv_geometry<Height, Width, Kernel, Stride, Padding>{}, col);
  }

  /// The adjoint of im2col_batch, assigned: x = col2im(col) for `count`
  /// images, where col has the layout that im2col_batch writes.
  static void col2im_batch(const Scalar* col, std::size_t count, std::size_t channels,
                           std::size_t height, std::size_t width, std::size_t kernel,
                           std::size_t stride, std::size_t padding, Scalar* x) {
    raise_batch(col, count, channels, detail::conv_geometry(height, width, kernel, stride, padding),
                x);
  }

  /// Adds back like col2im_batch, for a geometry fixed at compile time.
  template <std::size_t Height, std::size_t Width, std::size_t Kernel, std::size_t Stride,
            std::size_t Padding>
  static void col2im_batch(const Scalar* col, std::size_t count, std::size_t channels, Scalar* x) {
    raise_batch(col, count, channels,
                detail::fixed_conv_geometry<Height, Width, Kernel, Stride, Padding>{}, x);
  }

  /// Lowers `count` images for a convolution with a rectangular kernel, to
  /// the layout that the square-kernel im2col_batch writes, with rows
  /// (c * kernel_h + i) * kernel_w + j:
  /// col[row][n * oh * ow + oy * ow + ox] =
  /// x[n][c][oy * stride_h - padding_h + i][ox * stride_w - padding_w + j], or 0
  /// in the padding.
  static void im2col_batch(const Scalar* x, std::size_t count, std::size_t channels,
                           std::size_t height, std::size_t width, std::size_t kernel_h,
                           std::size_t kernel_w, std::size_t stride_h, std::size_t stride_w,
                           std::size_t padding_h, std::size_t padding_w, Scalar* col) {
    const detail::rect_conv_geometry g(height, width, kernel_h, kernel_w, stride_h, stride_w,
                                       padding_h, padding_w);
    const std::size_t row_length = count * g.area;
    const std::size_t rows_per_channel = g.kernel_h * g.kernel_w;
    const auto planes = static_cast<std::ptrdiff_t>(count * channels);
    const bool parallel = static_cast<std::size_t>(planes) * rows_per_channel * g.area >=
                              detail::parallel_copy_elements &&
                          !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
    for (std::ptrdiff_t p = 0; p < planes; ++p) {
      const std::size_t c = static_cast<std::size_t>(p) / count;
      const std::size_t n = static_cast<std::size_t>(p) % count;
      lower_rect_plane(x + (n * channels + c) * g.image, g,
                       col + c * rows_per_channel * row_length + n * g.area, row_length);
    }
  }

  /// The adjoint of the rectangular im2col_batch, assigned: x = col2im(col)
  /// for `count` images.
  static void col2im_batch(const Scalar* col, std::size_t count, std::size_t channels,
                           std::size_t height, std::size_t width, std::size_t kernel_h,
                           std::size_t kernel_w, std::size_t stride_h, std::size_t stride_w,
                           std::size_t padding_h, std::size_t padding_w, Scalar* x) {
    const detail::rect_conv_geometry g(height, width, kernel_h, kernel_w, stride_h, stride_w,
                                       padding_h, padding_w);
    const std::size_t row_length = count * g.area;
    const std::size_t rows_per_channel = g.kernel_h * g.kernel_w;
    const auto planes = static_cast<std::ptrdiff_t>(count * channels);
    const bool parallel = static_cast<std::size_t>(planes) * rows_per_channel * g.area >=
                              detail::parallel_copy_elements &&
                          !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
    for (std::ptrdiff_t p = 0; p < planes; ++p) {
      const std::size_t c = static_cast<std::size_t>(p) / count;
      const std::size_t n = static_cast<std::size_t>(p) % count;
      raise_rect_plane(col + c * rows_per_channel * row_length + n * g.area, g,
                       x + (n * channels + c) * g.image, row_length);
    }
  }

  /// Copies `count` samples of `channels` planes of `area` values from NCHW
  /// order to channel-major order: out[c][n * area + p] = x[n][c][p].
  static void nchw_to_cnhw(const Scalar* x, std::size_t count, std::size_t channels,
                           std::size_t area, Scalar* out) {
    const auto channel_count = static_cast<std::ptrdiff_t>(channels);
    const bool parallel =
        count * channels * area >= detail::parallel_copy_elements && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
    for (std::ptrdiff_t c = 0; c < channel_count; ++c) {
      const auto channel = static_cast<std::size_t>(c);
      for (std::size_t n = 0; n < count; ++n)
        std::copy_n(x + (n * channels + channel) * area, area, out + (channel * count + n) * area);
    }
  }

  /// The inverse of nchw_to_cnhw: x[n][c][p] = in[c][n * area + p].
  static void cnhw_to_nchw(const Scalar* in, std::size_t count, std::size_t channels,
                           std::size_t area, Scalar* x) {
    const auto channel_count = static_cast<std::ptrdiff_t>(channels);
    const bool parallel =
        count * channels * area >= detail::parallel_copy_elements && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
    for (std::ptrdiff_t c = 0; c < channel_count; ++c) {
      const auto channel = static_cast<std::size_t>(c);
      for (std::size_t n = 0; n < count; ++n)
        std::copy_n(in + (channel * count + n) * area, area, x + (n * channels + channel) * area);
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
  /// The test reads the exponent bits, so it also works under -ffast-math,
  /// where std::isfinite folds to true.
  static std::size_t first_non_finite(const Scalar* x, std::size_t n) {
    // Adding one to a value's exponent field carries into the sign bit
    // exactly when the field is all ones (NaN or infinity), so one
    // vectorised pass of integer AND, ADD and OR finds whether any value is
    // not finite. Only then does a scalar loop look for the first one.
    using bits = detail::float_bits<Scalar>;
    using word = typename bits::type;
    constexpr word exponent_unit = bits::mantissa_mask + 1;
    word carries = 0;
    const auto count = static_cast<std::ptrdiff_t>(n);
    const bool parallel = n >= parallel_fill_elements && !omp_in_parallel();
#pragma omp parallel for simd schedule(static) reduction(| : carries) if (parallel)
    for (std::ptrdiff_t i = 0; i < count; ++i)
      carries |= (std::bit_cast<word>(x[i]) & bits::exponent_mask) + exponent_unit;
    if ((carries & bits::sign_mask) == 0) return n;
    for (std::size_t i = 0; i < n; ++i)
      if (!detail::is_finite(x[i])) return i;
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

 private:
  /// Threads for `count` tasks: 1 inside a parallel region or when task
  /// parallelism is off, else at most one per task.
  static int task_threads(std::size_t count) {
    if (omp_in_parallel() || !detail::task_parallel_enabled || count < 2) return 1;
    const int threads = std::min(omp_get_max_threads(), detail::max_task_threads);
    return static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(threads), count));
  }

  /// Returns memory for one thread's partial sum in parallel_sum_tasks,
  /// separate from the workspace that the tasks use. It only grows, like the
  /// workspace.
  static Scalar* partial_sum_buffer(std::size_t count) {
    thread_local std::vector<Scalar> buffer;
    if (buffer.size() < count) buffer.resize(count);
    return buffer.data();
  }

  /// Length from which fill and copy split the work across threads.
  static constexpr std::size_t parallel_fill_elements = std::size_t{1} << 18;

  /// Calls OpenBLAS once, which uses as many threads as it is set to.
  static void blas_gemm(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n,
                        std::size_t k, Scalar alpha, const Scalar* a, std::size_t lda,
                        const Scalar* b, std::size_t ldb, Scalar beta, Scalar* c, std::size_t ldc) {
    using index = xt::blas_index_t;
    cxxblas::gemm<index>(cxxblas::StorageOrder::RowMajor,
                         transpose_a ? cxxblas::Transpose::Trans : cxxblas::Transpose::NoTrans,
                         transpose_b ? cxxblas::Transpose::Trans : cxxblas::Transpose::NoTrans,
                         static_cast<index>(m), static_cast<index>(n), static_cast<index>(k), alpha,
                         a, static_cast<index>(lda), b, static_cast<index>(ldb), beta, c,
                         static_cast<index>(ldc));
  }

  template <class Geometry>
  static void lower_batch(const Scalar* x, std::size_t count, std::size_t channels,
                          const Geometry& g, Scalar* col) {
    const std::size_t row_length = count * g.area;
    const std::size_t rows_per_channel = g.kernel * g.kernel;
    const auto planes = static_cast<std::ptrdiff_t>(count * channels);
    const bool parallel = static_cast<std::size_t>(planes) * rows_per_channel * g.area >=
                              detail::parallel_copy_elements &&
                          !omp_in_parallel();
    // Each (sample, channel) plane fills its own columns of the kernel * kernel
    // rows of its channel, so the planes are independent. The loop runs over
    // the samples of one channel after another, so consecutive planes write
    // consecutive parts of the same rows.
#pragma omp parallel for schedule(static) if (parallel)
    for (std::ptrdiff_t p = 0; p < planes; ++p) {
      const std::size_t c = static_cast<std::size_t>(p) / count;
      const std::size_t n = static_cast<std::size_t>(p) % count;
      lower_plane(x + (n * channels + c) * g.image, g,
                  col + c * rows_per_channel * row_length + n * g.area, row_length);
    }
  }

  template <class Geometry>
  static void raise_batch(const Scalar* col, std::size_t count, std::size_t channels,
                          const Geometry& g, Scalar* x) {
    const std::size_t row_length = count * g.area;
    const auto planes = static_cast<std::ptrdiff_t>(count * channels);
    const bool parallel = static_cast<std::size_t>(planes) * g.kernel * g.kernel * g.area >=
                              detail::parallel_copy_elements &&
                          !omp_in_parallel();
    // As in lower_batch, the samples of one channel follow each other, so
    // consecutive planes read consecutive parts of the same rows.
#pragma omp parallel for schedule(static) if (parallel)
    for (std::ptrdiff_t p = 0; p < planes; ++p) {
      const std::size_t c = static_cast<std::size_t>(p) / count;
      const std::size_t n = static_cast<std::size_t>(p) % count;
      raise_plane(col, row_length, n * g.area, c, g, x + (n * channels + c) * g.image, false);
    }
  }

  /// Maximum size of an image plane, in values and with the padding of its
  /// last column phase, that is split into column phases on the stack.
  /// Larger planes go through the strided loops.
  static constexpr std::size_t phase_capacity = 8192;

  /// Writes the im2col rows (c, i, j) of one image plane: for each kernel
  /// tap, out_h * out_w values at out + (i * kernel + j) * row_length.
  ///
  /// With stride s > 1, the input columns that one kernel tap reads are
  /// every s-th one. The plane is first split into its s column phases
  /// (phase r contains columns r, r + s, r + 2s, ...), so every tap then
  /// copies contiguous runs instead of gathering with a stride.
  template <class Geometry>
  static void lower_plane(const Scalar* plane, const Geometry& g, Scalar* out,
                          std::size_t row_length) {
    const bool split = g.stride > 1 && g.height * g.stride * g.phase_width <= phase_capacity;
    alignas(64) Scalar phases[phase_capacity];
    if (split) split_phases(plane, g, phases);
    const auto height = static_cast<std::ptrdiff_t>(g.height);
    for (std::size_t i = 0; i < g.kernel; ++i)
      detail::for_each_column_tap(g, [&](std::size_t j, auto tap) {
        Scalar* row = out + (i * g.kernel + j) * row_length;
        for (std::size_t oy = 0; oy < g.out_h; ++oy, row += g.out_w) {
          const std::ptrdiff_t y = g.input_row(oy, i);
          // Rows are short (out_w values), so plain loops beat calls to
          // memset and memcpy here. The simd pragmas keep GCC from turning
          // the loops into such calls.
          if (y < 0 || y >= height || tap.first == tap.last) {
#pragma omp simd
            for (std::size_t t = 0; t < g.out_w; ++t) row[t] = 0;
            continue;
          }
          for (std::size_t t = 0; t < tap.first; ++t) row[t] = 0;
          const auto input_row = static_cast<std::size_t>(y);
          if (split) {
            const Scalar* in =
                phases + (input_row * g.stride + tap.phase) * g.phase_width +
                static_cast<std::size_t>(static_cast<std::ptrdiff_t>(tap.first) + tap.shift);
#pragma omp simd
            for (std::size_t t = 0; t < tap.last - tap.first; ++t) row[tap.first + t] = in[t];
          } else {
            const Scalar* in = plane + input_row * g.width +
                               static_cast<std::size_t>(
                                   static_cast<std::ptrdiff_t>(tap.first * g.stride) + tap.offset);
            for (std::size_t t = 0; t < tap.last - tap.first; ++t)
              row[tap.first + t] = in[t * g.stride];
          }
          for (std::size_t t = tap.last; t < g.out_w; ++t) row[t] = 0;
        }
      });
  }

  /// Writes the im2col rows (c, i, j) of one image plane for a rectangular
  /// kernel: for each kernel tap, out_h * out_w values at out + (i * kernel_w
  /// + j) * row_length.
  static void lower_rect_plane(const Scalar* plane, const detail::rect_conv_geometry& g,
                               Scalar* out, std::size_t row_length) {
    const auto height = static_cast<std::ptrdiff_t>(g.height);
    for (std::size_t i = 0; i < g.kernel_h; ++i)
      for (std::size_t j = 0; j < g.kernel_w; ++j) {
        const detail::column_tap tap = g.tap(j);
        Scalar* row = out + (i * g.kernel_w + j) * row_length;
        for (std::size_t oy = 0; oy < g.out_h; ++oy, row += g.out_w) {
          const std::ptrdiff_t y = g.input_row(oy, i);
          if (y < 0 || y >= height || tap.first == tap.last) {
            std::fill_n(row, g.out_w, Scalar(0));
            continue;
          }
          std::fill_n(row, tap.first, Scalar(0));
          const Scalar* in = plane + static_cast<std::size_t>(y) * g.width +
                             static_cast<std::size_t>(
                                 static_cast<std::ptrdiff_t>(tap.first * g.stride_w) + tap.offset);
          if (g.stride_w == 1) {
            std::copy_n(in, tap.last - tap.first, row + tap.first);
          } else {
            for (std::size_t t = 0; t < tap.last - tap.first; ++t)
              row[tap.first + t] = in[t * g.stride_w];
          }
          std::fill_n(row + tap.last, g.out_w - tap.last, Scalar(0));
        }
      }
  }

  /// Sets one image plane to the sum of its im2col rows (c, i, j) for a
  /// rectangular kernel, the adjoint of lower_rect_plane.
  static void raise_rect_plane(const Scalar* col, const detail::rect_conv_geometry& g,
                               Scalar* plane, std::size_t row_length) {
    std::fill_n(plane, g.image, Scalar(0));
    const auto height = static_cast<std::ptrdiff_t>(g.height);
    for (std::size_t i = 0; i < g.kernel_h; ++i)
      for (std::size_t j = 0; j < g.kernel_w; ++j) {
        const detail::column_tap tap = g.tap(j);
        if (tap.first == tap.last) continue;
        const Scalar* row = col + (i * g.kernel_w + j) * row_length;
        for (std::size_t oy = 0; oy < g.out_h; ++oy) {
          const std::ptrdiff_t y = g.input_row(oy, i);
          if (y < 0 || y >= height) continue;
          const Scalar* in = row + oy * g.out_w + tap.first;
          Scalar* target = plane + static_cast<std::size_t>(y) * g.width +
                           static_cast<std::size_t>(
                               static_cast<std::ptrdiff_t>(tap.first * g.stride_w) + tap.offset);
          for (std::size_t t = 0; t < tap.last - tap.first; ++t) target[t * g.stride_w] += in[t];
        }
      }
  }

  /// Splits an image plane into column phases: phases[(y * s + r) *
  /// phase_width + t] = plane[y][s * t + r], 0 past the last column.
  template <class Geometry>
  static void split_phases(const Scalar* plane, const Geometry& g, Scalar* phases) {
    for (std::size_t y = 0; y < g.height; ++y)
      for (std::size_t r = 0; r < g.stride; ++r) {
        Scalar* out = phases + (y * g.stride + r) * g.phase_width;
        const Scalar* in = plane + y * g.width + r;
        const std::size_t length = r < g.width ? (g.width - r + g.stride - 1) / g.stride : 0;
        for (std::size_t t = 0; t < length; ++t) out[t] = in[t * g.stride];
        for (std::size_t t = length; t < g.phase_width; ++t) out[t] = 0;
      }
  }

  /// Adds the im2col rows of channel c back onto one image plane (x +=
  /// col2im, or x = col2im when `accumulate` is false): the columns
  /// [column, column + area) of each row, whose rows are row_length long,
  /// belong to this plane.
  ///
  /// With stride s > 1, each kernel tap adds onto every s-th column, so the
  /// sums are taken in the s column phases of the plane, where each tap adds
  /// a contiguous run, and the phases are interleaved into the plane once.
  template <class Geometry>
  static void raise_plane(const Scalar* col, std::size_t row_length, std::size_t column,
                          std::size_t c, const Geometry& g, Scalar* plane, bool accumulate) {
    const bool split = g.stride > 1 && g.height * g.stride * g.phase_width <= phase_capacity;
    alignas(64) Scalar phases[phase_capacity];
    if (split) {
#pragma omp simd
      for (std::size_t t = 0; t < g.height * g.stride * g.phase_width; ++t) phases[t] = 0;
    } else if (!accumulate) {
      std::fill_n(plane, g.image, Scalar(0));
    }
    const auto height = static_cast<std::ptrdiff_t>(g.height);
    for (std::size_t i = 0; i < g.kernel; ++i)
      detail::for_each_column_tap(g, [&](std::size_t j, auto tap) {
        if (tap.first == tap.last) return;
        const std::size_t length = tap.last - tap.first;
        const Scalar* row = col + ((c * g.kernel + i) * g.kernel + j) * row_length + column;
        for (std::size_t oy = 0; oy < g.out_h; ++oy) {
          const std::ptrdiff_t y = g.input_row(oy, i);
          if (y < 0 || y >= height) continue;
          const Scalar* in = row + oy * g.out_w + tap.first;
          const auto input_row = static_cast<std::size_t>(y);
          if (split) {
            Scalar* out =
                phases + (input_row * g.stride + tap.phase) * g.phase_width +
                static_cast<std::size_t>(static_cast<std::ptrdiff_t>(tap.first) + tap.shift);
#pragma omp simd
            for (std::size_t t = 0; t < length; ++t) out[t] += in[t];
          } else {
            Scalar* out = plane + input_row * g.width +
                          static_cast<std::size_t>(
                              static_cast<std::ptrdiff_t>(tap.first * g.stride) + tap.offset);
            for (std::size_t t = 0; t < length; ++t) out[t * g.stride] += in[t];
          }
        }
      });
    if (split) merge_phases(phases, g, plane, accumulate);
  }

  /// The inverse of split_phases: plane[y][s * t + r] (+)= phases[(y * s + r)
  /// * phase_width + t].
  template <class Geometry>
  static void merge_phases(const Scalar* phases, const Geometry& g, Scalar* plane,
                           bool accumulate) {
    for (std::size_t y = 0; y < g.height; ++y)
      for (std::size_t r = 0; r < g.stride && r < g.width; ++r) {
        const Scalar* in = phases + (y * g.stride + r) * g.phase_width;
        Scalar* out = plane + y * g.width + r;
        const std::size_t length = (g.width - r + g.stride - 1) / g.stride;
        if (accumulate) {
          for (std::size_t t = 0; t < length; ++t) out[t * g.stride] += in[t];
        } else {
          for (std::size_t t = 0; t < length; ++t) out[t * g.stride] = in[t];
        }
      }
  }
};

}  // namespace advgan

#pragma once
// Single-precision GEMM for products with a thin side, reading both operands
// in place.
//
// OpenBLAS copies both operands of every product into its own blocked
// layout before it multiplies. When C has few rows or few columns, copying
// the large operand costs about as much as multiplying it: at batch 1 a
// DCGAN generator's transposed convolutions spent as long in OpenBLAS's
// copy routine as in its kernel. The kernels here keep a block of C in
// AVX-512 registers and read A and B where they lie.
//
// The CPU is checked at run time, so a program compiled for plain x86-64
// still uses the kernels. Other CPUs, other compilers and double precision
// use OpenBLAS.

#include <omp.h>

#include <algorithm>  // std::min
#include <cstddef>    // std::size_t, std::ptrdiff_t
#include <utility>    // std::pair

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ADVGAN_THIN_GEMM 1
#include <immintrin.h>
#endif

namespace advgan::detail {

/// Whether gemm may use the thin kernels. Benchmarks and tests set it to
/// false to compare them with OpenBLAS.
inline bool thin_gemm_enabled = true;

/// Returns the part [begin, end) of `length` items that thread `part` of
/// `parts` takes, in multiples of 16 items except at the end.
inline std::pair<std::size_t, std::size_t> thread_share(std::size_t length, std::size_t parts,
                                                        std::size_t part) {
  const std::size_t block = (length / parts + 15) / 16 * 16;
  const std::size_t begin = std::min(length, part * block);
  const std::size_t end = part + 1 == parts ? length : std::min(length, begin + block);
  return {begin, end};
}

/// Returns whether the thin kernels can run on this CPU.
inline bool thin_gemm_supported() {
#ifdef ADVGAN_THIN_GEMM
  static const bool supported = __builtin_cpu_supports("avx512f") != 0;
  return supported;
#else
  return false;
#endif
}

/// Returns whether thin_gemm takes a product: B not transposed, and C with
/// at most 4 rows or at most 64 columns.
inline bool thin_gemm_suits(bool transpose_b, std::size_t m, std::size_t n) {
  return !transpose_b && (m <= 4 || n <= 64) && thin_gemm_enabled && thin_gemm_supported();
}

#ifdef ADVGAN_THIN_GEMM

/// The operands of one product C = alpha * A B + beta * C, where A[i][p] is
/// a[i * a_row + p * a_depth], B is row-major with leading dimension ldb and
/// C row-major with leading dimension ldc.
struct thin_product {
  std::size_t depth;
  float alpha;
  const float* a;
  std::ptrdiff_t a_row;
  std::ptrdiff_t a_depth;
  const float* b;
  std::size_t ldb;
  float beta;
  float* c;
  std::size_t ldc;
};

/// Computes the Rows x (16 * Vectors) block of C whose corner is row `row`,
/// column `column`. Only the columns in `last_mask` of the last 16 are read
/// and written. With beta == 0, C is not read, as in BLAS.
template <int Rows, int Vectors>
__attribute__((target("avx512f"))) inline void thin_block(const thin_product& p, std::size_t row,
                                                          std::size_t column, __mmask16 last_mask) {
  __m512 sums[Rows][Vectors];
#pragma GCC unroll 16
  for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < Vectors; ++j) sums[i][j] = _mm512_setzero_ps();
  const float* a = p.a + static_cast<std::ptrdiff_t>(row) * p.a_row;
  const float* b = p.b + column;
  for (std::size_t d = 0; d < p.depth; ++d) {
    __m512 b_values[Vectors];
#pragma GCC unroll 4
    for (int j = 0; j + 1 < Vectors; ++j) b_values[j] = _mm512_loadu_ps(b + 16 * j);
    b_values[Vectors - 1] = _mm512_maskz_loadu_ps(last_mask, b + 16 * (Vectors - 1));
#pragma GCC unroll 16
    for (int i = 0; i < Rows; ++i) {
      const __m512 a_value = _mm512_set1_ps(a[i * p.a_row]);
#pragma GCC unroll 4
      for (int j = 0; j < Vectors; ++j)
        sums[i][j] = _mm512_fmadd_ps(a_value, b_values[j], sums[i][j]);
    }
    a += p.a_depth;
    b += p.ldb;
  }
  const __m512 alpha = _mm512_set1_ps(p.alpha);
  const __m512 beta = _mm512_set1_ps(p.beta);
#pragma GCC unroll 16
  for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < Vectors; ++j) {
      const __mmask16 mask = j + 1 == Vectors ? last_mask : __mmask16{0xFFFF};
      float* out = p.c + (row + static_cast<std::size_t>(i)) * p.ldc + column + 16 * j;
      __m512 result = _mm512_mul_ps(alpha, sums[i][j]);
      if (p.beta != 0) result = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask, out), result);
      _mm512_mask_storeu_ps(out, mask, result);
    }
}

/// Computes rows [row, row + rows) of a block of 16 * Vectors columns, in
/// blocks of 16, 8, 4, 2 and 1 rows (at most 4 rows when Vectors is 4).
template <int Vectors>
inline void thin_rows(const thin_product& p, std::size_t row, std::size_t rows, std::size_t column,
                      __mmask16 last_mask) {
  const std::size_t end = row + rows;
  if constexpr (Vectors == 1) {
    for (; row + 16 <= end; row += 16) thin_block<16, 1>(p, row, column, last_mask);
    if (row + 8 <= end) {
      thin_block<8, 1>(p, row, column, last_mask);
      row += 8;
    }
  }
  if (row + 4 <= end) {
    thin_block<4, Vectors>(p, row, column, last_mask);
    row += 4;
  }
  if (row + 2 <= end) {
    thin_block<2, Vectors>(p, row, column, last_mask);
    row += 2;
  }
  if (row < end) thin_block<1, Vectors>(p, row, column, last_mask);
}

/// Computes the block of C with rows [row_begin, row_end) and columns
/// [column_begin, column_end) on the calling thread.
inline void thin_gemm_block(const thin_product& p, std::size_t row_begin, std::size_t row_end,
                            std::size_t column_begin, std::size_t column_end) {
  const std::size_t rows = row_end - row_begin;
  std::size_t column = column_begin;
  if (rows <= 4) {
    // Few rows: 64 columns at a time, so that each A value feeds 4 FMAs.
    for (; column + 64 <= column_end; column += 64)
      thin_rows<4>(p, row_begin, rows, column, 0xFFFF);
    for (; column < column_end; column += 16) {
      const std::size_t width = std::min<std::size_t>(16, column_end - column);
      thin_rows<1>(p, row_begin, rows, column, static_cast<__mmask16>((1U << width) - 1));
    }
    return;
  }
  // Blocks of 16 rows by 16 columns, all columns of one row block before the
  // next, so that the row block's A values stay in the L1 cache.
  for (std::size_t row = row_begin; row < row_end; row += 16) {
    const std::size_t height = std::min<std::size_t>(16, row_end - row);
    for (column = column_begin; column < column_end; column += 16) {
      const std::size_t width = std::min<std::size_t>(16, column_end - column);
      thin_rows<1>(p, row, height, column, static_cast<__mmask16>((1U << width) - 1));
    }
  }
}

/// Computes C = alpha * op(A) B + beta * C for row-major operands, with
/// op(A) m x k and B k x n. Call only where thin_gemm_suits() holds. With
/// more than one OpenMP thread and m * n * k at least `split_work`, each
/// thread takes a share of the rows, or of the columns for 4 rows or fewer.
inline void thin_gemm(bool transpose_a, std::size_t m, std::size_t n, std::size_t k, float alpha,
                      const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta,
                      float* c, std::size_t ldc, double split_work) {
  const auto stride = static_cast<std::ptrdiff_t>(lda);
  const thin_product product{
      k, alpha, a, transpose_a ? 1 : stride, transpose_a ? stride : 1, b, ldb, beta, c, ldc};
  const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const int threads = omp_in_parallel() || work < split_work ? 1 : omp_get_max_threads();
  if (threads == 1) {
    thin_gemm_block(product, 0, m, 0, n);
    return;
  }
  const bool split_rows = m > 4;
  const std::size_t length = split_rows ? m : n;
#pragma omp parallel num_threads(threads)
  {
    const auto [begin, end] = thread_share(length, static_cast<std::size_t>(omp_get_num_threads()),
                                           static_cast<std::size_t>(omp_get_thread_num()));
    if (begin < end && split_rows) thin_gemm_block(product, begin, end, 0, n);
    if (begin < end && !split_rows) thin_gemm_block(product, 0, m, begin, end);
  }
}

#endif  // ADVGAN_THIN_GEMM

}  // namespace advgan::detail

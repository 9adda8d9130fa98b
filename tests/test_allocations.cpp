// Steady-state training allocates nothing: after two warm-up iterations,
// gan_trainer::step makes no heap allocation, with one and with two
// threads.
//
// This file replaces the global operator new and delete of the whole test
// executable with versions that count calls and forward to malloc and free.
// The count is read only here; the other tests see the usual behaviour.

#include <doctest/doctest.h>

#include <omp.h>

#include <atomic>   // std::atomic
#include <cstddef>  // std::size_t
#include <cstdlib>  // std::malloc, std::free, std::aligned_alloc
#include <memory>   // std::make_unique
#include <new>      // std::bad_alloc, std::align_val_t, std::nothrow_t
#include <vector>   // std::vector

#include "advgan/advgan.hpp"

namespace {

std::atomic<std::size_t> allocation_count{0};

void* counted_allocation(std::size_t size) {
  allocation_count.fetch_add(1, std::memory_order_relaxed);
  // malloc(0) may return null, which operator new must not.
  return std::malloc(size == 0 ? 1 : size);
}

void* counted_aligned_allocation(std::size_t size, std::align_val_t alignment) {
  allocation_count.fetch_add(1, std::memory_order_relaxed);
  const auto align = static_cast<std::size_t>(alignment);
  // aligned_alloc needs a size that is a multiple of the alignment.
  const std::size_t rounded = (size + align - 1) / align * align;
  return std::aligned_alloc(align, rounded == 0 ? align : rounded);
}

void* checked(void* pointer) {
  if (pointer == nullptr) throw std::bad_alloc();
  return pointer;
}

}  // namespace

// GCC inlines these operators into the new and delete expressions of this
// file and then reports free() on memory from operator new, which is what a
// replacement that forwards to malloc does by design.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t size) {
  return checked(counted_allocation(size));
}
void* operator new[](std::size_t size) {
  return checked(counted_allocation(size));
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return counted_allocation(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return counted_allocation(size);
}
void* operator new(std::size_t size, std::align_val_t alignment) {
  return checked(counted_aligned_allocation(size, alignment));
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  return checked(counted_aligned_allocation(size, alignment));
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return counted_aligned_allocation(size, alignment);
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return counted_aligned_allocation(size, alignment);
}

void operator delete(void* pointer) noexcept {
  std::free(pointer);
}
void operator delete[](void* pointer) noexcept {
  std::free(pointer);
}
void operator delete(void* pointer, std::size_t) noexcept {
  std::free(pointer);
}
void operator delete[](void* pointer, std::size_t) noexcept {
  std::free(pointer);
}
void operator delete(void* pointer, const std::nothrow_t&) noexcept {
  std::free(pointer);
}
void operator delete[](void* pointer, const std::nothrow_t&) noexcept {
  std::free(pointer);
}
void operator delete(void* pointer, std::align_val_t) noexcept {
  std::free(pointer);
}
void operator delete[](void* pointer, std::align_val_t) noexcept {
  std::free(pointer);
}
void operator delete(void* pointer, std::size_t, std::align_val_t) noexcept {
  std::free(pointer);
}
void operator delete[](void* pointer, std::size_t, std::align_val_t) noexcept {
  std::free(pointer);
}
void operator delete(void* pointer, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(pointer);
}
void operator delete[](void* pointer, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(pointer);
}

namespace {

using namespace advgan;

// The DCGAN models of examples/dcgan_models.hpp at width 8.
using small_generator =
    sequential<input<100, 1, 1>,                                                 //
               conv_transpose2d<32, 4, 1, 0, 0, false>, batch_norm, relu,        // 4x4
               conv_transpose2d<16, 4, 2, 1, 0, false>, batch_norm, relu,        // 8x8
               conv_transpose2d<8, 4, 2, 1, 0, false>, batch_norm, relu,         // 16x16
               conv_transpose2d<1, 4, 2, 1, 0, false>, tanh_activation>;         // 32x32
using small_discriminator = sequential<input<1, 32, 32>,                         //
                                       conv2d<8, 4, 2, 1, false>, leaky_relu<>,  // 16x16
                                       conv2d<16, 4, 2, 1, false>, batch_norm, leaky_relu<>,  // 8x8
                                       conv2d<32, 4, 2, 1, false>, batch_norm, leaky_relu<>,  // 4x4
                                       conv2d<1, 4, 1, 0, false>, flatten>;                   // 1x1
using small_trainer = gan_trainer<small_generator, small_discriminator, non_saturating, cpu<float>>;

/// Restores the OpenMP and OpenBLAS thread counts when a test ends.
class thread_count_guard {
 public:
  thread_count_guard() : openmp_(openmp_threads()), openblas_(openblas_threads()) {}
  ~thread_count_guard() {
    omp_set_num_threads(openmp_);
    openblas_set_num_threads(openblas_);
  }
  thread_count_guard(const thread_count_guard&) = delete;
  thread_count_guard& operator=(const thread_count_guard&) = delete;

 private:
  int openmp_;
  int openblas_;
};

/// Returns the heap allocations made by one step after two warm-up steps.
std::size_t allocations_per_step(int threads) {
  set_threads(threads);
  auto trainer = std::make_unique<small_trainer>();
  cpu<float>::tensor real;
  cpu<float>::resize(real, 8, 1, 32, 32);
  philox rng(5);
  cpu<float>::fill_uniform(cpu<float>::data(real), cpu<float>::size(real), rng, -1, 1);
  trainer->step(real);
  trainer->step(real);
  const std::size_t before = allocation_count.load();
  trainer->step(real);
  return allocation_count.load() - before;
}

}  // namespace

TEST_CASE("allocation counter counts") {
  const std::size_t before = allocation_count.load();
  std::vector<int> values(100, 1);
  CHECK(allocation_count.load() - before == 1);
  CHECK(values.back() == 1);
}

TEST_CASE("training step allocates nothing after warm-up") {
  const thread_count_guard guard;
  for (const int threads : {1, 2}) {
    CAPTURE(threads);
    CHECK(allocations_per_step(threads) == 0);
  }
}

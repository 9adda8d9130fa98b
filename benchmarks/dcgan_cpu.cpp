// Google Benchmark cases for the reference DCGAN on the CPU backend. They
// time each layer's forward and backward pass at batch 64, one whole
// training iteration (gan_trainer::step) for 1 and 3 image channels,
// generator inference at batch 1 and 64 (at batch 1 also with OpenBLAS for
// every GEMM), and the GEMMs of one iteration replayed alone.
//
// Every case takes the thread count as its argument ("threads:N") and calls
// set_threads(N) first. benchmarks/compare_pytorch.py runs these cases next
// to the same workload in PyTorch.

#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>    // std::max
#include <cstddef>      // std::size_t
#include <memory>       // std::unique_ptr
#include <type_traits>  // std::is_same_v
#include <vector>       // std::vector

#include <advgan/advgan.hpp>

#include "../examples/dcgan_models.hpp"

namespace {

using namespace advgan;
using backend = cpu<float>;
using tensor = backend::tensor;

constexpr std::size_t batch = 64;

/// The reference DCGAN generator (100 -> 512 -> 256 -> 128 -> Channels) for
/// Channels x 32 x 32 images, without biases, as in PyTorch's DCGAN example.
template <std::size_t Channels>
using generator = sequential<input<100, 1, 1>,                                            //
                             conv_transpose2d<512, 4, 1, 0, 0, false>, batch_norm, relu,  // 4x4
                             conv_transpose2d<256, 4, 2, 1, 0, false>, batch_norm, relu,  // 8x8
                             conv_transpose2d<128, 4, 2, 1, 0, false>, batch_norm, relu,  // 16x16
                             conv_transpose2d<Channels, 4, 2, 1, 0, false>, tanh_activation>;

/// The reference DCGAN discriminator (Channels -> 64 -> 128 -> 256 -> 1).
template <std::size_t Channels>
using discriminator = sequential<input<Channels, 32, 32>,                                //
                                 conv2d<64, 4, 2, 1, false>, leaky_relu<>,               // 16x16
                                 conv2d<128, 4, 2, 1, false>, batch_norm, leaky_relu<>,  // 8x8
                                 conv2d<256, 4, 2, 1, false>, batch_norm, leaky_relu<>,  // 4x4
                                 conv2d<1, 4, 1, 0, false>, flatten>;                    // 1x1

// The one-channel models are the example's reference models, so the
// benchmark measures what examples/dcgan_fashion_mnist.cpp trains.
static_assert(std::is_same_v<generator<1>, dcgan::generator<dcgan::reference_width>>);
static_assert(std::is_same_v<discriminator<1>, dcgan::discriminator<64>>);

template <class Backend, std::size_t Channels>
using trainer_for =
    gan_trainer<generator<Channels>, discriminator<Channels>, non_saturating, Backend>;

/// Returns a tensor (n, c, h, w) of uniform values in [-1, 1).
tensor random_tensor(std::size_t n, std::size_t c, std::size_t h, std::size_t w,
                     std::uint64_t seed) {
  tensor t;
  backend::resize(t, n, c, h, w);
  philox rng(seed);
  backend::fill_uniform(backend::data(t), backend::size(t), rng, -1, 1);
  return t;
}

void use_threads(const benchmark::State& state) {
  set_threads(static_cast<int>(state.range(0)));
}

// -- Layers --------------------------------------------------------------------

/// Times the forward pass of a one-layer model (Spec = sequential<input,
/// layer>) on a batch.
template <class Spec>
void layer_forward(benchmark::State& state) {
  use_threads(state);
  model<Spec, backend> m(1, init_scheme::dcgan);
  using in = typename Spec::input_shape;
  const tensor x = random_tensor(batch, in::channels, in::height, in::width, 2);
  for (auto _ : state) benchmark::DoNotOptimize(backend::data(m.forward(x)));
}

/// Times the backward pass of a one-layer model on a batch: the input
/// gradient and the parameter gradients.
template <class Spec>
void layer_backward(benchmark::State& state) {
  use_threads(state);
  model<Spec, backend> m(1, init_scheme::dcgan);
  using in = typename Spec::input_shape;
  using out = typename Spec::output_shape;
  const tensor x = random_tensor(batch, in::channels, in::height, in::width, 2);
  const tensor dy = random_tensor(batch, out::channels, out::height, out::width, 3);
  tensor dx;
  m.forward(x);
  for (auto _ : state) {
    m.backward(dy, &dx);
    benchmark::DoNotOptimize(backend::data(dx));
  }
}

#define ADVGAN_LAYER_BENCHMARKS(name, Spec) \
  BENCHMARK(layer_forward<Spec>)            \
      ->Name(name "/forward")               \
      ->ArgName("threads")                  \
      ->Arg(1)                              \
      ->Arg(2)                              \
      ->UseRealTime()                       \
      ->Unit(benchmark::kMillisecond);      \
  BENCHMARK(layer_backward<Spec>)           \
      ->Name(name "/backward")              \
      ->ArgName("threads")                  \
      ->Arg(1)                              \
      ->Arg(2)                              \
      ->UseRealTime()                       \
      ->Unit(benchmark::kMillisecond)

// Generator layers, in order.
using g_conv1 = sequential<input<100, 1, 1>, conv_transpose2d<512, 4, 1, 0, 0, false>>;
using g_norm1 = sequential<input<512, 4, 4>, batch_norm>;
using g_relu1 = sequential<input<512, 4, 4>, relu>;
using g_conv2 = sequential<input<512, 4, 4>, conv_transpose2d<256, 4, 2, 1, 0, false>>;
using g_norm2 = sequential<input<256, 8, 8>, batch_norm>;
using g_relu2 = sequential<input<256, 8, 8>, relu>;
using g_conv3 = sequential<input<256, 8, 8>, conv_transpose2d<128, 4, 2, 1, 0, false>>;
using g_norm3 = sequential<input<128, 16, 16>, batch_norm>;
using g_relu3 = sequential<input<128, 16, 16>, relu>;
using g_conv4 = sequential<input<128, 16, 16>, conv_transpose2d<1, 4, 2, 1, 0, false>>;
using g_tanh = sequential<input<1, 32, 32>, tanh_activation>;
ADVGAN_LAYER_BENCHMARKS("generator/conv_transpose2d_100_512", g_conv1);
ADVGAN_LAYER_BENCHMARKS("generator/batch_norm_512x4x4", g_norm1);
ADVGAN_LAYER_BENCHMARKS("generator/relu_512x4x4", g_relu1);
ADVGAN_LAYER_BENCHMARKS("generator/conv_transpose2d_512_256", g_conv2);
ADVGAN_LAYER_BENCHMARKS("generator/batch_norm_256x8x8", g_norm2);
ADVGAN_LAYER_BENCHMARKS("generator/relu_256x8x8", g_relu2);
ADVGAN_LAYER_BENCHMARKS("generator/conv_transpose2d_256_128", g_conv3);
ADVGAN_LAYER_BENCHMARKS("generator/batch_norm_128x16x16", g_norm3);
ADVGAN_LAYER_BENCHMARKS("generator/relu_128x16x16", g_relu3);
ADVGAN_LAYER_BENCHMARKS("generator/conv_transpose2d_128_1", g_conv4);
ADVGAN_LAYER_BENCHMARKS("generator/tanh_1x32x32", g_tanh);

// Discriminator layers, in order.
using d_conv1 = sequential<input<1, 32, 32>, conv2d<64, 4, 2, 1, false>>;
using d_leaky1 = sequential<input<64, 16, 16>, leaky_relu<>>;
using d_conv2 = sequential<input<64, 16, 16>, conv2d<128, 4, 2, 1, false>>;
using d_norm2 = sequential<input<128, 8, 8>, batch_norm>;
using d_leaky2 = sequential<input<128, 8, 8>, leaky_relu<>>;
using d_conv3 = sequential<input<128, 8, 8>, conv2d<256, 4, 2, 1, false>>;
using d_norm3 = sequential<input<256, 4, 4>, batch_norm>;
using d_leaky3 = sequential<input<256, 4, 4>, leaky_relu<>>;
using d_conv4 = sequential<input<256, 4, 4>, conv2d<1, 4, 1, 0, false>>;
ADVGAN_LAYER_BENCHMARKS("discriminator/conv2d_1_64", d_conv1);
ADVGAN_LAYER_BENCHMARKS("discriminator/leaky_relu_64x16x16", d_leaky1);
ADVGAN_LAYER_BENCHMARKS("discriminator/conv2d_64_128", d_conv2);
ADVGAN_LAYER_BENCHMARKS("discriminator/batch_norm_128x8x8", d_norm2);
ADVGAN_LAYER_BENCHMARKS("discriminator/leaky_relu_128x8x8", d_leaky2);
ADVGAN_LAYER_BENCHMARKS("discriminator/conv2d_128_256", d_conv3);
ADVGAN_LAYER_BENCHMARKS("discriminator/batch_norm_256x4x4", d_norm3);
ADVGAN_LAYER_BENCHMARKS("discriminator/leaky_relu_256x4x4", d_leaky3);
ADVGAN_LAYER_BENCHMARKS("discriminator/conv2d_256_1", d_conv4);

// -- Whole iteration -----------------------------------------------------------

/// Times one gan_trainer::step at batch 64: D on the real batch, G forward, D on
/// the detached fake batch, D's Adam step, D on the fake batch for G's loss,
/// G's backward pass and Adam step (and G's weight average).
template <std::size_t Channels>
void iteration(benchmark::State& state) {
  use_threads(state);
  auto trainer = std::make_unique<trainer_for<backend, Channels>>();
  const tensor real = random_tensor(batch, Channels, 32, 32, 4);
  // Warm-up: the first steps size every buffer.
  trainer->step(real);
  trainer->step(real);
  for (auto _ : state) benchmark::DoNotOptimize(trainer->step(real).discriminator_loss);
}
BENCHMARK(iteration<1>)
    ->Name("iteration/channels:1")
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(iteration<3>)
    ->Name("iteration/channels:3")
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

/// Runs the one-channel iteration with each way the CPU backend can spread
/// the work over threads, selected by the argument "mode". Mode 0 runs each
/// convolution's chunks of samples as parallel tasks, the default. Mode 1
/// runs the chunks one after another and splits each step (lowering, GEMM,
/// layout copy) across the threads. Mode 2 is mode 1 with OpenBLAS's own
/// threads for the GEMMs.
void iteration_threading(benchmark::State& state) {
  use_threads(state);
  const auto mode = state.range(1);
  advgan::detail::task_parallel_enabled = mode == 0;
  advgan::detail::gemm_split_enabled = mode != 2;
  auto trainer = std::make_unique<trainer_for<backend, 1>>();
  const tensor real = random_tensor(batch, 1, 32, 32, 4);
  trainer->step(real);
  trainer->step(real);
  for (auto _ : state) benchmark::DoNotOptimize(trainer->step(real).discriminator_loss);
  advgan::detail::task_parallel_enabled = true;
  advgan::detail::gemm_split_enabled = true;
}
BENCHMARK(iteration_threading)
    ->Name("iteration_threading/channels:1")
    ->ArgNames({"threads", "mode"})
    ->Args({2, 0})
    ->Args({2, 1})
    ->Args({2, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// -- Generator inference -------------------------------------------------------

/// Times the generator in evaluation mode on `Batch` latent vectors.
template <std::size_t Batch>
void generator_inference(benchmark::State& state) {
  use_threads(state);
  model<generator<1>, backend> g(1, init_scheme::dcgan);
  g.eval();
  const tensor z = random_tensor(Batch, 100, 1, 1, 5);
  g.forward(z);
  for (auto _ : state) benchmark::DoNotOptimize(backend::data(g.forward(z)));
}
BENCHMARK(generator_inference<1>)
    ->Name("generator_inference/batch:1")
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(generator_inference<64>)
    ->Name("generator_inference/batch:64")
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

/// Times generator inference at batch 1 with every GEMM on OpenBLAS, to
/// compare with the kernels for thin products that gemm uses by default.
void generator_inference_openblas(benchmark::State& state) {
  advgan::detail::thin_gemm_enabled = false;
  generator_inference<1>(state);
  advgan::detail::thin_gemm_enabled = true;
}
BENCHMARK(generator_inference_openblas)
    ->Name("generator_inference_openblas/batch:1")
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// -- The GEMMs of one iteration ------------------------------------------------

/// The shape and settings of one gemm call.
struct gemm_call {
  bool transpose_a;
  bool transpose_b;
  std::size_t m, n, k, lda, ldb, ldc;
  float beta;
};

/// The log that recording_cpu appends each gemm call to, or null when not
/// recording.
std::vector<gemm_call>* gemm_log = nullptr;

/// The CPU backend with every gemm call logged, so one trainer step reveals
/// the GEMMs that the layers run.
struct recording_cpu : cpu<float> {
  static void gemm(bool transpose_a, bool transpose_b, std::size_t m, std::size_t n, std::size_t k,
                   float alpha, const float* a, std::size_t lda, const float* b, std::size_t ldb,
                   float beta, float* c, std::size_t ldc) {
    if (gemm_log != nullptr)
      gemm_log->push_back({transpose_a, transpose_b, m, n, k, lda, ldb, ldc, beta});
    cpu<float>::gemm(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
};

/// Returns the gemm calls of one steady-state trainer step, recorded with
/// one thread so the log sees one call at a time. The shapes do not depend
/// on the thread count, because the chunks of samples depend only on the
/// batch size.
template <std::size_t Channels>
std::vector<gemm_call> iteration_gemms() {
  const int threads = openmp_threads();
  set_threads(1);
  auto trainer = std::make_unique<trainer_for<recording_cpu, Channels>>();
  const tensor real = random_tensor(batch, Channels, 32, 32, 4);
  trainer->step(real);
  std::vector<gemm_call> calls;
  gemm_log = &calls;
  trainer->step(real);
  gemm_log = nullptr;
  set_threads(threads);
  return calls;
}

/// Runs exactly the GEMMs of one training iteration, with the same shapes,
/// transposes and leading dimensions, on the backend's gemm. With one thread
/// they run one after another. With more they run as the layers run most of
/// them, as parallel tasks of single-threaded GEMMs, each thread writing its
/// own C. The iteration's time over this one's gives the share of the
/// iteration spent outside GEMM. Counters give the number of GEMMs and their
/// floating-point operations.
template <std::size_t Channels>
void iteration_gemm_only(benchmark::State& state) {
  use_threads(state);
  const std::vector<gemm_call> calls = iteration_gemms<Channels>();
  std::size_t a_size = 0, b_size = 0, c_size = 0;
  double flops = 0;
  for (const gemm_call& g : calls) {
    a_size = std::max(a_size, (g.transpose_a ? g.k : g.m) * g.lda);
    b_size = std::max(b_size, (g.transpose_b ? g.n : g.k) * g.ldb);
    c_size = std::max(c_size, g.m * g.ldc);
    flops += 2.0 * static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k);
  }
  const auto threads = static_cast<std::size_t>(openmp_threads());
  std::vector<float> a(a_size, 0.01f), b(b_size, 0.02f), c(c_size * threads, 0.0f);
  auto run = [&](std::size_t index) {
    const gemm_call& g = calls[index];
    float* out = c.data() + c_size * static_cast<std::size_t>(omp_get_thread_num());
    backend::gemm(g.transpose_a, g.transpose_b, g.m, g.n, g.k, 1.0f, a.data(), g.lda, b.data(),
                  g.ldb, g.beta, out, g.ldc);
  };
  for (auto _ : state) {
    backend::parallel_tasks(calls.size(), run);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["gemm_calls"] = static_cast<double>(calls.size());
  state.counters["gflop"] = flops * 1e-9;
  state.counters["gflop_per_s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(iteration_gemm_only<1>)
    ->Name("iteration_gemm_only/channels:1")
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(iteration_gemm_only<3>)
    ->Name("iteration_gemm_only/channels:3")
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// -- GEMM peak -----------------------------------------------------------------

/// Runs one large square product through the backend's gemm, the rate that
/// the layers' GEMMs are measured against.
void gemm_square(benchmark::State& state) {
  use_threads(state);
  constexpr std::size_t size = 2048;
  std::vector<float> a(size * size, 0.01f), b(size * size, 0.02f), c(size * size, 0.0f);
  for (auto _ : state) {
    backend::gemm(false, false, size, size, size, 1.0f, a.data(), size, b.data(), size, 0.0f,
                  c.data(), size);
    benchmark::DoNotOptimize(c.data());
  }
  const double flops = 2.0 * static_cast<double>(size * size * size);
  state.counters["gflop_per_s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(gemm_square)
    ->Name("gemm_square/size:2048")
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

// Builds a small model from the installed headers, runs one forward pass and
// checks the output shape. Exits with 0 on success and 1 otherwise.

#include <advgan/advgan.hpp>

#include <cstddef>  // std::size_t
#include <cstdio>   // std::printf, std::fprintf

int main() {
  using namespace advgan;
  using network = sequential<input<1, 6, 6>, conv2d<2, 3, 1, 0>, relu, flatten, dense<3>>;
  using backend = cpu<float>;

  model<network, backend> net(7);
  backend::tensor x;
  backend::resize(x, 2, 1, 6, 6);
  philox rng(1);
  backend::fill_uniform(backend::data(x), backend::size(x), rng, -1.0, 1.0);

  const backend::tensor& y = net.forward(x);
  const extents expected{2, 3, 1, 1};
  if (backend::shape(y) != expected) {
    std::fprintf(stderr, "forward pass output has shape %s, expected %s\n",
                 to_string(backend::shape(y)).c_str(), to_string(expected).c_str());
    return 1;
  }
  const std::size_t first_bad = backend::first_non_finite(backend::data(y), backend::size(y));
  if (first_bad != backend::size(y)) {
    std::fprintf(stderr, "forward pass output has a non-finite value at index %zu\n", first_bad);
    return 1;
  }
  std::printf("forward pass output shape %s\n", to_string(backend::shape(y)).c_str());
  return 0;
}

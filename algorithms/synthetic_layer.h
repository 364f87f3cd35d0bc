#pragma once
// Synthetic linear-layer data for GPTQ tests and benchmarks (header-only; nothing in the
// library uses it). Real LLM activations are strongly correlated across channels and carry a
// few outlier channels 20-100x larger than the rest; GPTQ's advantage over RTN comes from
// exactly that structure, so i.i.d. inputs would make a meaningless test.
//   x = (z · M + σ·ε) ⊙ s   z ~ N(0, I_rank), M ~ N(0, 1/rank) fixed, ε ~ N(0, 1),
//   s = 1 except `outliers` channels with s = outlier_scale.
// Everything is drawn from seeded std::mt19937_64 engines, never a global RNG.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "ptq/tensor.h"

namespace ptq::synthetic_layer {

inline Mat gaussian(int rows, int cols, float stddev, std::mt19937_64& rng) {
  std::normal_distribution<float> dist(0.0f, stddev);
  Mat m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
  return m;
}

class Activations {
 public:
  Activations(int k, int rank, float noise, int outliers, float outlier_scale, uint64_t seed)
      : noise_(noise), scale_(Vec::Ones(k)) {
    std::mt19937_64 rng(seed);
    mix_ = gaussian(rank, k, 1.0f / std::sqrt(static_cast<float>(rank)), rng);
    std::vector<int> channels(k);
    std::iota(channels.begin(), channels.end(), 0);
    std::shuffle(channels.begin(), channels.end(), rng);
    for (int i = 0; i < std::min(outliers, k); ++i) scale_[channels[i]] = outlier_scale;
  }
  int k() const { return static_cast<int>(mix_.cols()); }
  // [tokens, K]; different `stream` seeds give independent tokens (calibration vs held-out).
  Mat sample(int tokens, uint64_t stream) const {
    std::mt19937_64 rng(stream);
    Mat z = gaussian(tokens, static_cast<int>(mix_.rows()), 1.0f, rng);
    Mat x = z * mix_ + gaussian(tokens, k(), noise_, rng);
    return x * scale_.asDiagonal();
  }

 private:
  float noise_;
  Mat mix_;
  Vec scale_;
};

// Weights with mildly heavy tails (a Gaussian scale mixture), ~N(0, 1/K) overall.
inline Mat weights(int n, int k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Mat w = gaussian(n, k, 1.0f / std::sqrt(static_cast<float>(k)), rng);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (Eigen::Index i = 0; i < w.size(); ++i)
    if (u(rng) < 0.01f) w.data()[i] *= 4.0f;
  return w;
}

}  // namespace ptq::synthetic_layer

#include "calibration/sampler.h"

#include <random>

#include "ptq/error.h"

namespace ptq {

TokenSeqs sample_windows(const TokenSeqs& docs, int samples, int seq_len, uint64_t seed,
                         const std::string& source) {
  if (samples <= 0 || seq_len < 2)
    throw Error("calibration needs samples > 0 and seq_len >= 2 (got " + std::to_string(samples) +
                ", " + std::to_string(seq_len) + ")");
  std::vector<int32_t> stream;
  for (const auto& d : docs) stream.insert(stream.end(), d.begin(), d.end());
  if (stream.size() < size_t(seq_len))
    throw Error(source + ": " + std::to_string(stream.size()) +
                " tokens, fewer than one calibration window of " + std::to_string(seq_len));
  std::mt19937_64 rng(seed);
  const uint64_t starts = stream.size() - size_t(seq_len) + 1;
  TokenSeqs windows;
  windows.reserve(samples);
  for (int i = 0; i < samples; ++i) {
    uint64_t b = rng() % starts;
    windows.emplace_back(stream.begin() + b, stream.begin() + b + seq_len);
  }
  return windows;
}

}  // namespace ptq

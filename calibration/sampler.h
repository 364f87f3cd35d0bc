#pragma once
// The calibration sampler ("uniform-windows-v1", docs/calibration.md): the documents are
// concatenated into one token stream (each tinystories document keeps its BOS; text is one
// document with one BOS), and each of N windows of L tokens starts at
// rng() mod (len - L + 1), with rng a std::mt19937_64 seeded with the user's seed. Windows may
// overlap. Same data, N, L and seed give the same windows on every platform.
#include <cstdint>
#include <string>
#include <vector>

#include "calibration/text_data.h"

namespace ptq {

inline constexpr const char* kSamplerName = "uniform-windows-v1";

// Throws Error naming `source` when the stream is shorter than one window.
TokenSeqs sample_windows(const TokenSeqs& docs, int samples, int seq_len, uint64_t seed,
                         const std::string& source);

}  // namespace ptq

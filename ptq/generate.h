#pragma once
// Sampling from a model held in memory (formats/loaded_model.h opens any checkpoint ptq runs).
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ptq/forward.h"
#include "ptq/model.h"

namespace ptq {

struct SamplingOptions {
  int max_tokens = 128;
  float temperature = 0.0f;  // 0: greedy (argmax, lowest id on ties)
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool stop_at_eos = true;
};

// Extends `prompt` (which should start with BOS) by up to max_tokens sampled tokens; returns the
// whole sequence. Sampling uses its own std::mt19937_64 seeded from options.seed.
std::vector<int32_t> generate(const LlamaModel& model, std::vector<int32_t> prompt,
                              const SamplingOptions& options, int eos_id);

}  // namespace ptq

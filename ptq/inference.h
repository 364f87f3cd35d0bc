#pragma once
// Opening any model ptq can run: an fp checkpoint (HF directory or llama2.c .bin) or a ptq
// output directory (fake-quant today; packed layouts run on the packed kernels).
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ptq/forward.h"
#include "ptq/model.h"

namespace ptq {

struct LoadedModel {
  Model model;
  std::shared_ptr<const LlamaModel> forward;
};

// A packed directory (config.json quantization_config naming gptq or awq) runs its packed layers
// on make_packed_linear; embeddings, norms and lm_head load as usual.
LoadedModel load_model_for_inference(const std::string& path);

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

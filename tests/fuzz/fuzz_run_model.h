#pragma once
// Shared by the model harnesses: once a checkpoint opened, run it the way `ptq eval` would on a
// two-token input, so that everything a reader accepted is also safe to compute with.
#include <string>

#include "formats/loaded_model.h"

namespace ptq::fuzz {

// Small models only: the fuzzer mutates real checkpoints whose size fixes their dimensions,
// and a forward of anything larger would only slow it down.
inline void run_two_tokens(const std::string& path) {
  LoadedModel lm = load_model_for_inference(path);
  const ModelConfig& c = lm.model.config();
  if (int64_t(c.hidden_size) * c.num_layers > (1 << 16) || c.vocab_size < 3) return;
  const Mat logits = lm.forward->logits({1, 2});
  (void)logits;
}

}  // namespace ptq::fuzz

#pragma once
// Perplexity under a protocol (calibration/text_data.h). Sequences are scored in parallel, each
// independently, and their NLLs summed in sequence order, so the result is bit-identical at any
// thread count.
#include <cstdint>
#include <functional>
#include <vector>

#include "ptq/tensor.h"

namespace ptq {

using LogitsFn = std::function<Mat(const std::vector<int32_t>& ids)>;

struct EvalResult {
  double ppl = 0;
  double mean_nll = 0;
  double nll_sum = 0;
  int64_t tokens = 0;  // predicted tokens
  int64_t sequences = 0;
  double seconds = 0;
  double tokens_per_second = 0;  // forward tokens (including context-only) per second
  std::vector<double> seq_nll;   // per sequence, for reports
};

// `progress` (may be empty) is called with (done, total) from the calling thread only. Tokens
// before index `first_scored` of each sequence are context only (1: every prediction counts;
// llama-perplexity scores from the middle of each window).
EvalResult evaluate_perplexity(const LogitsFn& logits, const std::vector<std::vector<int32_t>>& seqs,
                               const std::function<void(size_t, size_t)>& progress = {}, int first_scored = 1);

}  // namespace ptq

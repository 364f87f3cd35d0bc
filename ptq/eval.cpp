#include "ptq/eval.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>

#include "ptq/error.h"
#include "ptq/forward.h"
#include "ptq/parallel.h"

namespace ptq {

EvalResult evaluate_perplexity(const LogitsFn& logits, const std::vector<std::vector<int32_t>>& seqs,
                               const std::function<void(size_t, size_t)>& progress, int first_scored) {
  first_scored = std::max(first_scored, 1);
  auto t0 = std::chrono::steady_clock::now();
  EvalResult r;
  r.seq_nll.assign(seqs.size(), 0.0);
  int64_t forward_tokens = 0;
  for (const auto& s : seqs) {
    forward_tokens += int64_t(s.size());
    r.tokens += std::max<int64_t>(int64_t(s.size()) - first_scored, 0);
  }
  parallel_for_each(seqs.size(), [&](size_t i) {
    r.seq_nll[i] = sequence_nll(logits(seqs[i]), seqs[i], first_scored);
  }, progress);
  for (double v : r.seq_nll) r.nll_sum += v;
  r.sequences = int64_t(seqs.size());
  r.mean_nll = r.tokens > 0 ? r.nll_sum / double(r.tokens) : 0.0;
  r.ppl = std::exp(r.mean_nll);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_second = r.seconds > 0 ? double(forward_tokens) / r.seconds : 0.0;
  return r;
}

}  // namespace ptq

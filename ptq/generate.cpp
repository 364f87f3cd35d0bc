#include "ptq/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>


namespace ptq {

// Uniform double in [0, 1) from 53 random bits: unlike std::uniform_real_distribution its
// output is the same with every standard library.
static double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

static int32_t sample_token(const Eigen::Ref<const Eigen::RowVectorXf>& logits,
                            const SamplingOptions& o, std::mt19937_64& rng) {
  Eigen::Index best = 0;
  if (o.temperature <= 0.0f) {
    logits.maxCoeff(&best);
    return int32_t(best);
  }
  const Eigen::Index n = logits.size();
  std::vector<double> p(n);
  double mx = logits.maxCoeff();
  double sum = 0;
  for (Eigen::Index i = 0; i < n; ++i) sum += p[i] = std::exp((logits(i) - mx) / o.temperature);
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  // Nucleus: keep the smallest prefix of the sorted distribution whose mass reaches top_p.
  double kept = 0;
  size_t cut = 0;
  while (cut < order.size() && (cut == 0 || kept < o.top_p * sum)) kept += p[order[cut++]];
  double r = uniform01(rng) * kept;
  for (size_t i = 0; i < cut; ++i) {
    r -= p[order[i]];
    if (r < 0) return order[i];
  }
  return order[cut - 1];
}

std::vector<int32_t> generate(const LlamaModel& model, std::vector<int32_t> ids,
                              const SamplingOptions& o, int eos_id) {
  std::mt19937_64 rng(o.seed);
  const int max_len = model.config().max_position_embeddings;
  if (ids.empty() || o.max_tokens <= 0 || int(ids.size()) >= max_len) return ids;
  KvCache cache(model.config(), int(std::min<int64_t>(max_len, int64_t(ids.size()) + o.max_tokens)));
  for (int step = 0; step < o.max_tokens && int(ids.size()) < max_len; ++step) {
    // Only the tokens the cache has not seen: the whole prompt first, then the last sample.
    Mat logits = model.logits_cached({ids.begin() + cache.length(), ids.end()}, cache);
    int32_t next = sample_token(logits.row(logits.rows() - 1), o, rng);
    ids.push_back(next);
    if (o.stop_at_eos && next == eos_id) break;
  }
  return ids;
}

}  // namespace ptq

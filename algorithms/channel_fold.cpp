#include "algorithms/channel_fold.h"

#include "ptq/error.h"

namespace ptq {

std::string fold_blocker(const GroupContext& g, int k) {
  // The producer computes x, the layers read x·T: 1/s cannot go into the producer of x·T.
  if (g.layers.front()->input_transform) return "the layers apply an online input transform (rot(...,online))";
  if (g.prev_norm) return g.prev_norm->size() == k ? "" : "the RMSNorm gain has the wrong size";
  if (!g.prev_linear) return "no RMSNorm or linear layer produces the input";
  if (g.prev_linear->w.size() == 0) return "the preceding linear layer is packed";
  if (g.prev_linear->rows() != k)
    // Grouped-query attention: one v_proj row feeds several o_proj columns (AutoAWQ skips too).
    return "the preceding layer has " + std::to_string(g.prev_linear->rows()) +
           " outputs for " + std::to_string(k) + " inputs";
  return "";
}

void fold_scales(GroupContext& g, const Vec& s) {
  PTQ_ASSERT(fold_blocker(g, int(s.size())).empty());
  for (Linear* l : g.layers) {
    l->w.array().rowwise() *= s.transpose().array();
    if (l->branch) {
      LowRankBranch b = *l->branch;
      b.l2.array().rowwise() *= s.transpose().array();
      const Mat exact = b.l2;
      for (Eigen::Index i = 0; i < b.l2.size(); ++i) b.l2.data()[i] = f16_to_f32(f32_to_f16(b.l2.data()[i]));
      l->w.noalias() += b.l1 * (exact - b.l2);
      l->branch = std::make_shared<const LowRankBranch>(std::move(b));
    }
  }
  if (g.prev_norm) *g.prev_norm = g.prev_norm->cwiseQuotient(s);
  if (g.prev_linear) {
    Linear& p = *g.prev_linear;
    p.w.array().colwise() /= s.array();
    if (p.bias.size()) p.bias = p.bias.cwiseQuotient(s);
    if (p.branch) {
      LowRankBranch b = *p.branch;
      b.l1.array().colwise() /= s.array();
      const Mat exact = b.l1;
      for (Eigen::Index i = 0; i < b.l1.size(); ++i) b.l1.data()[i] = f16_to_f32(f32_to_f16(b.l1.data()[i]));
      p.w.noalias() += (exact - b.l1) * b.l2;
      p.branch = std::make_shared<const LowRankBranch>(std::move(b));
    }
  }
  g.stats->scale_channels(s.cast<double>().cwiseInverse());
}

}  // namespace ptq

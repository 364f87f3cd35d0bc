#include "ptq/block_runner.h"

#include <algorithm>

#include "ptq/parallel.h"

namespace ptq {

// Windows run in chunks of this many: each chunk's captures are buffered, then handed to the
// sink in order. A fixed size (not the thread count) keeps results independent of threads.
static constexpr size_t kChunk = 8;

BlockActivations::BlockActivations(const ModelConfig& cfg, const HeadWeights& head,
                                   const std::vector<std::vector<int32_t>>& windows)
    : cfg_(cfg), rope_(cfg) {
  hidden_.reserve(windows.size());
  for (const auto& w : windows) hidden_.push_back(embed_tokens(head, w));
}

int64_t BlockActivations::num_tokens() const {
  int64_t n = 0;
  for (const auto& h : hidden_) n += h.rows();
  return n;
}

size_t BlockActivations::windows_for_tokens(int64_t tokens) const {
  size_t n = 0;
  for (int64_t seen = 0; n < hidden_.size() && seen < tokens; ++n) seen += hidden_[n].rows();
  return n;
}

void BlockActivations::run(const BlockWeights& w, const std::array<bool, kNumLinearInputs>& want,
                           const CaptureSink& sink, bool advance) {
  run_windows(hidden_.size(), w, want, sink, advance);
}

void BlockActivations::capture_first(size_t windows, const BlockWeights& w,
                                     const std::array<bool, kNumLinearInputs>& want, const CaptureSink& sink) {
  run_windows(std::min(windows, hidden_.size()), w, want, sink, false);
}

void BlockActivations::run_windows(size_t windows, const BlockWeights& w,
                                   const std::array<bool, kNumLinearInputs>& want, const CaptureSink& sink,
                                   bool advance) {
  std::optional<LinearInput> last_wanted;
  for (int g = 0; g < kNumLinearInputs; ++g)
    if (want[g]) last_wanted = LinearInput(g);
  if (!advance && !last_wanted) return;  // nothing to capture, nothing to keep
  for (size_t begin = 0; begin < windows; begin += kChunk) {
    const size_t end = std::min(windows, begin + kChunk);
    std::vector<std::array<Mat, kNumLinearInputs>> captured(end - begin);
    parallel_for_each(end - begin, [&](size_t i) {
      Mat x = hidden_[begin + i];
      block_forward(cfg_, w, rope_, x, [&](LinearInput g, const Mat& in) {
        if (want[int(g)]) captured[i][int(g)] = in;
      }, advance ? std::nullopt : last_wanted);
      if (advance) hidden_[begin + i] = std::move(x);
    });
    if (!sink) continue;
    for (size_t i = 0; i < captured.size(); ++i)
      for (int g = 0; g < kNumLinearInputs; ++g)
        if (want[g]) sink(LinearInput(g), begin + i, captured[i][g]);
  }
}

}  // namespace ptq

#pragma once
// Hidden states of every calibration window entering the current block. The pipeline and
// `ptq calibrate --capture all` advance it block by block, so memory holds one block's
// activations whatever the model's depth.
#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "ptq/forward.h"

namespace ptq {

// Receives the input that linear group `g` reads for window `seq`; always called from the
// calling thread, in window order, so accumulating into it is deterministic.
using CaptureSink = std::function<void(LinearInput g, size_t seq, const Mat& x)>;

class BlockActivations {
 public:
  BlockActivations(const ModelConfig& cfg, const HeadWeights& head,
                   const std::vector<std::vector<int32_t>>& windows);
  size_t num_windows() const { return hidden_.size(); }
  int64_t num_tokens() const;
  // The fewest first windows holding at least `tokens` tokens (all of them when they hold fewer).
  size_t windows_for_tokens(int64_t tokens) const;

  // Runs block `w` on every window. Inputs of the groups set in `want` go to `sink`. When
  // `advance` is true the hidden states become the block's outputs; otherwise they are kept.
  void run(const BlockWeights& w, const std::array<bool, kNumLinearInputs>& want,
           const CaptureSink& sink, bool advance);
  // The inputs of the groups in `want` for the first `windows` windows only (no advance).
  void capture_first(size_t windows, const BlockWeights& w, const std::array<bool, kNumLinearInputs>& want,
                     const CaptureSink& sink);
  const RopeTable& rope() const { return rope_; }

 private:
  void run_windows(size_t windows, const BlockWeights& w, const std::array<bool, kNumLinearInputs>& want,
                   const CaptureSink& sink, bool advance);
  const ModelConfig& cfg_;
  RopeTable rope_;
  std::vector<Mat> hidden_;
};

}  // namespace ptq

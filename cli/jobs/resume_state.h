#pragma once
// Resume state of an interrupted compression job, kept in the output's staging directory
// (OUT.partial/resume/, see formats/output_dir.h) so a killed run continues from its last
// completed block and produces the same bytes as an uninterrupted one.
//
// Files:
//   resume/fingerprint.json   {"sha256": H, "inputs": {...}}: H hashes the canonical JSON of
//                             the model checksum, calibration provenance (or activation file
//                             checksum), recipe, overrides, mode, format and the ptq build.
//                             A state whose fingerprint differs from the job's is discarded.
//   resume/block_LLL.safetensors   one per finished block, written atomically after the block:
//     final.<param>          F32  the block's final weights (attn_norm, ffn_norm [hidden];
//                                 <proj>.w [out, in]; <proj>.bias [out] when present) — run
//                                 again to re-derive the hidden states entering the next block
//     q.<layer>.<part>       every part of each non-skipped layer's QuantizedLayer
//                            (QuantizedLayer::to_tensors: lossless, fp32 statistics kept as F32)
//     t.<tensor name>        F32  full-precision tensors a transform replaced (tensor sink)
//     __metadata__ "results" JSON array of LayerResult (+ the layer's descriptor) in sink order
// Block l's file exists only when every layer of blocks 0..l went to the sinks.
#include <string>
#include <vector>

#include "ptq/forward.h"
#include "ptq/pipeline.h"

namespace ptq {

// What one finished block sent to the sinks, in order.
struct BlockRecord {
  std::vector<std::pair<std::string, Mat>> tensors;  // tensor sink calls
  std::vector<LayerResult> results;
  std::vector<std::optional<QuantizedLayer>> weights;  // parallel to results; empty = skipped
};

class ResumeState {
 public:
  // `dir` is the state directory; `fingerprint_inputs` a canonical JSON text. An existing state
  // with another fingerprint is discarded (`discarded()` says so), as is any with `fresh`.
  ResumeState(std::string dir, const std::string& fingerprint_inputs, bool fresh);
  int completed_blocks() const { return completed_; }  // contiguous from block 0
  bool discarded() const { return discarded_; }

  void save_block(int layer, const BlockRecord& record, const BlockWeights& final_weights) const;
  BlockRecord load_record(int layer) const;
  // The block's final weights: the source's block with every saved parameter put back.
  BlockWeights load_final_weights(const Model& model, int layer) const;

 private:
  std::string block_file(int layer) const;
  std::string dir_;
  int completed_ = 0;
  bool discarded_ = false;
};

}  // namespace ptq

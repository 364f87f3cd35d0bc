#pragma once
// Llama-family forward pass in fp32 on the CPU, organised block by block so the pipeline can run
// block l on given inputs, capture what each linear layer reads, and swap in quantized weights.
//
//   x = embed[ids]
//   per block:  h = x + o_proj(attn(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1)))  n1 = rms(x)
//               x = h + down_proj(silu(gate_proj(n2)) * up_proj(n2))                   n2 = rms(h)
//   logits = lm_head(rms(x))
// RoPE uses HF's rotate_half layout (pairs i and i + head_dim/2). Attention is causal and
// grouped-query (head h reads kv head h / (heads / kv_heads)).
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ptq/linear.h"
#include "ptq/model.h"
#include "ptq/tensor.h"

namespace ptq {

// The four places inside a block where linear layers read an input: q/k/v share one, o has its
// own, gate/up share one, down has its own.
enum class LinearInput { kQKV = 0, kO = 1, kGateUp = 2, kDown = 3 };
inline constexpr int kNumLinearInputs = 4;
const char* linear_input_name(LinearInput g);  // "qkv", "o", "gate_up", "down"
// HF module names that read `g` in `layer`, e.g. model.layers.0.self_attn.q_proj.
std::vector<std::string> linear_consumers(int layer, LinearInput g);

struct BlockWeights {
  Vec attn_norm, ffn_norm;
  Linear q, k, v, o, gate, up, down;  // q/k/v carry a bias when attention_bias
  KvQuant kv{};  // fake quantization (and R3) of the keys and values this block's attention computes
  // `packed_for(module)` returns the packed kernel for a module stored packed, else nullptr (the
  // dense `.weight` is loaded).
  using PackedLookup = std::function<std::shared_ptr<const PackedLinear>(const std::string& module)>;
  static BlockWeights load(const Model& model, int layer, const PackedLookup& packed_for = {});
  Linear* linear(const std::string& short_name);  // "q_proj", ..., "down_proj"; nullptr if unknown
  const Linear* linear(const std::string& short_name) const;
};

// Short names of the linear layers reading each input, in module order.
const std::vector<std::string>& linear_short_names(LinearInput g);

struct HeadWeights {
  Mat embed;       // [vocab, hidden]
  Vec final_norm;  // [hidden]
  Mat lm_head;     // [vocab, hidden]; a copy of embed when tied
  InputRounding lm_head_rounding = InputRounding::kNone;  // as Linear::input_rounding
  static HeadWeights load(const Model& model);
};

// Called with the input a linear group reads: x [tokens, features].
using CaptureFn = std::function<void(LinearInput, const Mat& x)>;

// RoPE's inverse frequencies θ^(−2i/d), i < d/2, scaled as `s` says (transformers'
// _compute_*_parameters): linear divides all by the factor; llama3 divides those whose wavelength
// exceeds original_max/low_freq_factor, keeps those below original_max/high_freq_factor and
// interpolates between; default and dynamic (within the positions ptq runs) leave them.
std::vector<double> rope_inverse_frequencies(int head_dim, double theta, const RopeScaling& s);

class RopeTable {
 public:
  explicit RopeTable(const ModelConfig& cfg);
  // x [T, num_heads*head_dim] at positions first_position .. first_position+T-1.
  void apply(Mat& x, int num_heads, int64_t first_position = 0) const;
  int max_positions() const { return max_pos_; }

 private:
  // Rows of the table built up front: a config may claim 2^31 positions, and a table for them
  // would take terabytes. Later positions are computed on the fly by the same formula.
  static constexpr int kTablePositions = 1 << 16;
  void angles(int64_t position, float* c, float* s) const;
  int half_, max_pos_;
  bool dynamic_;  // past max_pos_ the frequencies would depend on the sequence length
  std::vector<double> inv_freq_;  // [half]
  std::vector<float> cos_, sin_;  // [min(max_pos, kTablePositions), half]
};

Mat embed_tokens(const HeadWeights& head, const std::vector<int32_t>& ids);
// Runs one block in place on x [T, hidden]. `capture` may be empty. With `stop_after` set, the
// block returns right after capturing that input and x is left unspecified: a capture-only
// pass then skips the rest of the block.
void block_forward(const ModelConfig& cfg, const BlockWeights& w, const RopeTable& rope, Mat& x,
                   const CaptureFn& capture = {},
                   std::optional<LinearInput> stop_after = std::nullopt);
// The parts of block_forward a caller swapping weights needs, with its arithmetic: the attention
// context from the normed input n [T, hidden] of one sequence (o_proj's input), and
// silu(gate(n)) ⊙ up(n) (down_proj's input).
Mat attention_context(const ModelConfig& cfg, const RopeTable& rope, const KvQuant& kv, const Linear& q_proj,
                      const Linear& k_proj, const Linear& v_proj, const Mat& n);
Mat swiglu(const Linear& gate, const Linear& up, const Mat& n);
Mat final_logits(const ModelConfig& cfg, const HeadWeights& head, const Mat& x);  // [T, vocab]
void rms_norm_rows(const Mat& x, const Vec& gain, double eps, Mat& out);

// Keys (after RoPE) and values of every block for the positions run so far, so that a decoding
// step runs only its new tokens through the blocks instead of the whole prefix again.
class KvCache {
 public:
  KvCache(const ModelConfig& cfg, int capacity);  // room for `capacity` positions
  int length() const { return length_; }
  int capacity() const { return capacity_; }

 private:
  friend class LlamaModel;
  std::vector<Mat> k_, v_;  // per block [capacity, kv_heads * head_dim]
  int length_ = 0, capacity_;
};

// A whole model held in memory for evaluation and generation.
class LlamaModel {
 public:
  explicit LlamaModel(const Model& model);
  LlamaModel(ModelConfig cfg, HeadWeights head, std::vector<BlockWeights> blocks);
  const ModelConfig& config() const { return cfg_; }
  Mat logits(const std::vector<int32_t>& ids) const;  // [T, vocab]
  // Logits [new_ids.size(), vocab] of `new_ids` at positions cache.length() onwards, given the
  // cached prefix; their keys and values join the cache. A first call on an empty cache runs
  // the same arithmetic as logits().
  Mat logits_cached(const std::vector<int32_t>& new_ids, KvCache& cache) const;
  std::vector<BlockWeights>& blocks() { return blocks_; }
  const std::vector<BlockWeights>& blocks() const { return blocks_; }
  HeadWeights& head() { return head_; }

 private:
  ModelConfig cfg_;
  HeadWeights head_;
  std::vector<BlockWeights> blocks_;
  RopeTable rope_;
};

// Σ −log p(ids[t+1] | ids[..t]) over t = first_scored-1 .. T-2, in fp64.
double sequence_nll(const Mat& logits, const std::vector<int32_t>& ids, int first_scored = 1);

}  // namespace ptq

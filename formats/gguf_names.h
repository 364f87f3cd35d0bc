#pragma once
// The correspondence between llama.cpp's GGUF tensors and HF names, shared by the GGUF reader
// (formats/gguf_model.cpp) and writer (formats/gguf_format.cpp), so the two cannot drift apart.
//
// llama.cpp's converter permutes the output rows of q_proj and k_proj for architecture llama
// (convert_hf_to_gguf.py LlamaModel.permute) so its interleaved-pair RoPE sees HF's rotate_half
// pairs:  gguf_row[h*hd + 2*i + j] = hf_row[h*hd + j*(hd/2) + i]  (i < hd/2, j in {0, 1}).
#include <cstdint>
#include <optional>
#include <string>

namespace ptq {

// The HF name of a GGUF tensor of a model with `layers` blocks, or nullopt when ptq has none.
std::optional<std::string> hf_tensor_name(const std::string& gguf, int layers);
// The GGUF name of an HF tensor, or nullopt when llama.cpp's llama architecture has none.
std::optional<std::string> gguf_tensor_name(const std::string& hf);

// Where HF row `hf_row` of a permuted projection (heads of `hd` rows) is stored, and back.
int64_t gguf_row_of(int64_t hf_row, int64_t hd);
int64_t hf_row_of(int64_t gguf_row, int64_t hd);
// The heads over which a tensor's rows are permuted (q_proj: heads, k_proj: kv heads, weights
// and biases), 0 for every other tensor.
int qk_permuted_heads(const std::string& hf, int heads, int kv_heads);

}  // namespace ptq

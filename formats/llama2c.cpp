// llama2.c v0 checkpoints (Karpathy's export format): a 7 x int32 header followed by fp32
// arrays, each stacked over layers. Mapped onto HF names so the rest of ptq sees one layout.
#include <climits>
#include <cstring>
#include <filesystem>
#include <map>

#include "formats/tensor_sources.h"
#include "ptq/error.h"
#include "ptq/mapped_file.h"

namespace ptq {
namespace {

struct Header {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
  std::string str() const {
    return "dim=" + std::to_string(dim) + ", hidden_dim=" + std::to_string(hidden_dim) +
           ", n_layers=" + std::to_string(n_layers) + ", n_heads=" + std::to_string(n_heads) +
           ", n_kv_heads=" + std::to_string(n_kv_heads) + ", vocab_size=" + std::to_string(vocab_size) +
           ", seq_len=" + std::to_string(seq_len);
  }
};

struct Entry {
  size_t offset = 0;           // byte offset in the file
  std::vector<int64_t> shape;  // HF shape
  int permute_heads = 0;       // > 0: rows are interleaved-pair rope layout over this many heads
};

class Llama2cSource : public F32TensorTable {
 public:
  Llama2cSource(std::shared_ptr<MappedFile> file, std::map<std::string, Entry> entries)
      : file_(std::move(file)), entries_(std::move(entries)) {
    for (const auto& [name, e] : entries_) add_f32_tensor(name, e.shape, file_->path());
  }
  Mat load_f32(const std::string& name) const override {
    const Entry& e = entry(name);
    const int64_t rows = e.shape.size() == 1 ? 1 : e.shape[0];
    const int64_t cols = e.shape.back();
    Mat m(rows, cols);
    const uint8_t* src = file_->data() + e.offset;
    if (e.permute_heads == 0) {
      std::memcpy(m.data(), src, static_cast<size_t>(m.size()) * 4);
      return m;
    }
    // llama2.c rotates interleaved pairs (2j, 2j+1); HF's rotate_half pairs (j, j + hd/2).
    const int64_t hd = rows / e.permute_heads, half = hd / 2;
    for (int64_t h = 0; h < e.permute_heads; ++h)
      for (int64_t a = 0; a < 2; ++a)
        for (int64_t j = 0; j < half; ++j) {
          const int64_t dst_row = h * hd + a * half + j, src_row = h * hd + 2 * j + a;
          std::memcpy(m.row(dst_row).data(), src + src_row * cols * 4, static_cast<size_t>(cols) * 4);
        }
    return m;
  }

 private:
  const Entry& entry(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) throw Error(file_->path() + ": no tensor named '" + name + "'");
    return it->second;
  }
  std::shared_ptr<MappedFile> file_;
  std::map<std::string, Entry> entries_;
};

Header read_header(const MappedFile& f) {
  Header h{};
  if (f.size() < sizeof(Header))
    throw Error(f.path() + ": llama2.c checkpoint is truncated: " + std::to_string(f.size()) +
                " bytes, expected at least 28 for the header");
  std::memcpy(&h, f.data(), sizeof(Header));
  const std::string& p = f.path();
  if (h.dim <= 0 || h.hidden_dim <= 0 || h.n_layers <= 0 || h.n_heads <= 0 || h.n_kv_heads <= 0 ||
      h.vocab_size == 0 || h.vocab_size == INT32_MIN || h.seq_len <= 0)
    throw Error(p + ": llama2.c header (" + h.str() + ") has non-positive sizes");
  if (h.dim % h.n_heads != 0 || (h.dim / h.n_heads) % 2 != 0 || h.n_heads % h.n_kv_heads != 0)
    throw Error(p + ": llama2.c header (" + h.str() +
                ") needs dim divisible by n_heads into an even head size, and n_heads divisible by n_kv_heads");
  return h;
}

// Walks the file in llama2.c order, assigning offsets; returns the end offset. With `out` null it
// only adds up the sizes, so a header claiming 2^31 layers costs nothing before it is refused.
unsigned __int128 layout(const Header& h, std::map<std::string, Entry>* out) {
  const int64_t dim = h.dim, hidden = h.hidden_dim, L = h.n_layers, hd = dim / h.n_heads;
  const int64_t kv_dim = hd * h.n_kv_heads, vocab = h.vocab_size < 0 ? -int64_t(h.vocab_size) : h.vocab_size;
  unsigned __int128 off = sizeof(Header);
  auto single = [&](const std::string& name, std::vector<int64_t> shape) {
    unsigned __int128 n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    if (out) (*out)[name] = Entry{static_cast<size_t>(off), std::move(shape), 0};
    off += n * 4;
  };
  auto stacked = [&](const std::string& suffix, std::vector<int64_t> shape, int permute) {
    unsigned __int128 n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    for (int64_t i = 0; out && i < L; ++i)
      (*out)[layer_prefix(int(i)) + suffix] =
          Entry{static_cast<size_t>(off + n * 4 * static_cast<uint64_t>(i)), shape, permute};
    off += n * 4 * static_cast<uint64_t>(L);
  };
  single("model.embed_tokens.weight", {vocab, dim});
  stacked("input_layernorm.weight", {dim}, 0);
  stacked("self_attn.q_proj.weight", {dim, dim}, h.n_heads);
  stacked("self_attn.k_proj.weight", {kv_dim, dim}, h.n_kv_heads);
  stacked("self_attn.v_proj.weight", {kv_dim, dim}, 0);
  stacked("self_attn.o_proj.weight", {dim, dim}, 0);
  stacked("post_attention_layernorm.weight", {dim}, 0);
  stacked("mlp.gate_proj.weight", {hidden, dim}, 0);
  stacked("mlp.down_proj.weight", {dim, hidden}, 0);
  stacked("mlp.up_proj.weight", {hidden, dim}, 0);
  single("model.norm.weight", {dim});
  // RoPE tables: recomputed from rope_theta at inference, so skipped rather than exposed.
  off += static_cast<unsigned __int128>(h.seq_len) * static_cast<uint64_t>(hd / 2) * 4 * 2;
  if (h.vocab_size < 0) single("lm_head.weight", {vocab, dim});
  return off;
}

ModelConfig config_from(const Header& h) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.hidden_size = h.dim;
  c.intermediate_size = h.hidden_dim;
  c.num_layers = h.n_layers;
  c.num_heads = h.n_heads;
  c.num_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.vocab_size = h.vocab_size < 0 ? -h.vocab_size : h.vocab_size;
  c.max_position_embeddings = h.seq_len;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = h.vocab_size > 0;
  return c;
}

}  // namespace

OpenedSource open_llama2c(const std::string& path) {
  auto file = std::make_shared<MappedFile>(path);
  const Header h = read_header(*file);
  const unsigned __int128 expected = layout(h, nullptr);
  if (expected != file->size()) {
    const std::string exp = expected > UINT64_MAX ? std::string("more than 2^64")
                                                  : std::to_string(static_cast<uint64_t>(expected));
    throw Error(path + ": llama2.c header (" + h.str() + ") implies " + exp +
                " bytes but the file has " + std::to_string(file->size()));
  }
  std::map<std::string, Entry> entries;
  layout(h, &entries);
  OpenedSource out;
  out.config = config_from(h);
  out.tensors = std::make_shared<Llama2cSource>(file, std::move(entries));
  out.files = {path};
  return out;
}

// A directory is an HF checkpoint; any other file falls back to llama2.c (checked by its header).
static const ModelSourceRegistrar kLlama2cSource({"llama2c", 90, [](const std::string& p) { std::error_code ec; return std::filesystem::is_regular_file(p, ec); }, open_llama2c});

}  // namespace ptq

#include "support/gguf_builder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "formats/ggml_blocks.h"
#include "ptq/fs.h"
#include "ptq/model.h"

namespace ptq::test {

std::string GgufBuilder::le32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string GgufBuilder::le64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string GgufBuilder::gguf_string(const std::string& s) { return le64(s.size()) + s; }

void GgufBuilder::raw_kv(const std::string& key, uint32_t type, const std::string& value_bytes) {
  kv_ += gguf_string(key) + le32(type) + value_bytes;
  ++n_kv_;
}
void GgufBuilder::u32(const std::string& key, uint32_t v) { raw_kv(key, 4, le32(v)); }
void GgufBuilder::u64(const std::string& key, uint64_t v) { raw_kv(key, 10, le64(v)); }
void GgufBuilder::i32(const std::string& key, int32_t v) { raw_kv(key, 5, le32(uint32_t(v))); }
void GgufBuilder::f32(const std::string& key, float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  raw_kv(key, 6, le32(u));
}
void GgufBuilder::boolean(const std::string& key, bool v) { raw_kv(key, 7, std::string(1, v ? 1 : 0)); }
void GgufBuilder::str(const std::string& key, const std::string& v) { raw_kv(key, 8, gguf_string(v)); }
void GgufBuilder::str_array(const std::string& key, const std::vector<std::string>& v) {
  std::string b = le32(8) + le64(v.size());
  for (const auto& s : v) b += gguf_string(s);
  raw_kv(key, 9, b);
}
void GgufBuilder::i32_array(const std::string& key, const std::vector<int32_t>& v) {
  std::string b = le32(5) + le64(v.size());
  for (int32_t x : v) b += le32(uint32_t(x));
  raw_kv(key, 9, b);
}
void GgufBuilder::f32_array(const std::string& key, const std::vector<float>& v) {
  std::string b = le32(6) + le64(v.size());
  for (float x : v) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    b += le32(u);
  }
  raw_kv(key, 9, b);
}

void GgufBuilder::tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t ggml_type, std::string data) {
  tensors_.push_back({name, std::move(ne), ggml_type, std::move(data)});
}

void GgufBuilder::f32_tensor(const std::string& name, const Mat& m, bool vector) {
  std::string data(reinterpret_cast<const char*>(m.data()), size_t(m.size()) * 4);
  if (vector) tensor(name, {uint64_t(m.size())}, 0, std::move(data));
  else tensor(name, {uint64_t(m.cols()), uint64_t(m.rows())}, 0, std::move(data));
}

void GgufBuilder::remove_tensor(const std::string& name) {
  std::erase_if(tensors_, [&](const Tensor& t) { return t.name == name; });
}

std::string GgufBuilder::bytes(const Options& o) const {
  std::string out = "GGUF" + le32(o.version);
  out += le64(o.n_tensors_override >= 0 ? uint64_t(o.n_tensors_override) : tensors_.size());
  out += le64(o.n_kv_override >= 0 ? uint64_t(o.n_kv_override) : n_kv_);
  out += kv_;
  std::string data;
  for (size_t k = 0; k < tensors_.size(); ++k) {
    const Tensor& t = tensors_[k];
    uint64_t offset = data.size();
    if (k + 1 == tensors_.size()) offset = uint64_t(int64_t(offset) + o.offset_delta);
    out += gguf_string(t.name) + le32(uint32_t(t.ne.size()));
    for (uint64_t d : t.ne) out += le64(d);
    out += le32(t.type) + le64(offset);
    data += t.data;
    data.resize((data.size() + o.alignment - 1) / o.alignment * o.alignment, '\0');
  }
  out.resize((out.size() + o.alignment - 1) / o.alignment * o.alignment, '\0');
  return out + data;
}

void GgufBuilder::write(const std::string& path, const Options& o) const { write_file_atomic(path, bytes(o)); }

namespace {

Mat random_mat(std::mt19937_64& rng, int64_t rows, int64_t cols, float scale) {
  Mat m(rows, cols);
  // Uniform in [-scale, scale) from 24 random bits: no std distribution, so every library agrees.
  for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = (float(rng() >> 40) / float(1 << 24) * 2 - 1) * scale;
  return m;
}

}  // namespace

std::string q8_0_bytes(const Mat& rows) {
  std::string out;
  for (int64_t r = 0; r < rows.rows(); ++r)
    for (int64_t b = 0; b < rows.cols() / 32; ++b) {
      BlockQ8_0 blk{};
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::abs(rows(r, b * 32 + j)));
      blk.d = f32_to_f16(amax / 127);
      const float d = f16_to_f32(blk.d);
      for (int j = 0; j < 32; ++j) blk.qs[j] = int8_t(d == 0 ? 0 : std::lround(rows(r, b * 32 + j) / d));
      out.append(reinterpret_cast<const char*>(&blk), sizeof blk);
    }
  return out;
}

Mat q8_0_values(const Mat& rows) {
  const std::string bytes = q8_0_bytes(rows);
  Mat out(rows.rows(), rows.cols());
  ggml_traits(GgmlType::Q8_0).dequantize(reinterpret_cast<const uint8_t*>(bytes.data()), out.data(), out.size());
  return out;
}

namespace {

// llama.cpp's converter layout: gguf_row[h*hd + 2i + j] = hf_row[h*hd + j*hd/2 + i].
Mat permute_rows(const Mat& hf, int heads, bool inverse = false) {
  const int64_t hd = hf.rows() / heads, half = hd / 2;
  Mat g(hf.rows(), hf.cols());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j) {
        if (inverse) g.row(h * hd + j * half + i) = hf.row(h * hd + 2 * i + j);
        else g.row(h * hd + 2 * i + j) = hf.row(h * hd + j * half + i);
      }
  return g;
}

}  // namespace

TinyLlama tiny_llama_gguf(uint64_t seed, bool tied, bool quantized, const std::string& arch) {
  constexpr int kHidden = 64, kLayers = 2, kHeads = 4, kKv = 2, kHd = 16, kFfn = 128;
  TinyLlama t;
  GgufBuilder& g = t.gguf;
  // Byte tokens in GPT-2's alphabet (ids 4..259), controls 0..3, then merged tokens.
  std::vector<std::string> tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unused>"};
  auto byte_char = [](int b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    int n = 0;
    for (int c = 0; c < b; ++c) n += !((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174);
    const uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + n);
    std::string s;
    if (cp < 0x80) s += char(cp);
    else {
      s += char(0xC0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3F));
    }
    return s;
  };
  for (int b = 0; b < 256; ++b) tokens.push_back(byte_char(b));
  const std::vector<std::string> merges = {"h e", "l l", "he ll", "hell o", "\xC4\xA0 w", "o r", "\xC4\xA0w or",
                                           "\xC4\xA0wor l", "\xC4\xA0worl d", "\xC4\xA0 t", "\xC4\xA0t he", "1 2"};
  for (const auto& m : merges) {
    const size_t sp = m.find(' ');
    tokens.push_back(m.substr(0, sp) + m.substr(sp + 1));
  }
  const int vocab = int(tokens.size());  // 272
  std::vector<int32_t> types(size_t(vocab), 1);
  for (int i = 0; i < 4; ++i) types[size_t(i)] = 3;

  g.str("general.architecture", arch);
  g.str("general.name", "tiny test llama");
  g.u32(arch + ".context_length", 256);
  g.u32(arch + ".embedding_length", kHidden);
  g.u32(arch + ".block_count", kLayers);
  g.u32(arch + ".feed_forward_length", kFfn);
  g.u32(arch + ".attention.head_count", kHeads);
  g.u32(arch + ".attention.head_count_kv", kKv);
  g.f32(arch + ".rope.freq_base", 500000.0f);
  g.f32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
  g.u32(arch + ".rope.dimension_count", kHd);
  g.u32(arch + ".vocab_size", uint32_t(vocab));
  g.str("tokenizer.ggml.model", "gpt2");
  g.str("tokenizer.ggml.pre", arch == "qwen2" ? "qwen2" : "smollm");
  g.str_array("tokenizer.ggml.tokens", tokens);
  g.i32_array("tokenizer.ggml.token_type", types);
  g.str_array("tokenizer.ggml.merges", merges);
  g.u32("tokenizer.ggml.bos_token_id", 1);
  g.u32("tokenizer.ggml.eos_token_id", 2);
  g.u32("tokenizer.ggml.unknown_token_id", 0);
  g.boolean("tokenizer.ggml.add_bos_token", false);

  std::mt19937_64 rng(seed);
  auto add = [&](const std::string& gguf_name, const std::string& hf_name, const Mat& hf, int permute_heads,
                 bool vector) {
    if (arch != "llama") permute_heads = 0;  // qwen2 is converted without the q/k permutation
    const Mat stored = permute_heads ? permute_rows(hf, permute_heads) : hf;
    const bool q8 = quantized && (gguf_name == "token_embd.weight" || gguf_name == "blk.0.attn_q.weight" ||
                                  gguf_name == "blk.0.attn_k.weight");
    if (!q8) {
      t.hf.emplace_back(hf_name, hf);
      g.f32_tensor(gguf_name, stored, vector);
      return;
    }
    const Mat values = q8_0_values(stored);
    t.hf.emplace_back(hf_name, permute_heads ? permute_rows(values, permute_heads, true) : values);
    g.tensor(gguf_name, {uint64_t(stored.cols()), uint64_t(stored.rows())}, uint32_t(GgmlType::Q8_0),
             q8_0_bytes(stored));
  };
  auto norm = [&]() {
    Mat m = random_mat(rng, 1, kHidden, 0.2f);
    m.array() += 1.0f;
    return m;
  };
  add("token_embd.weight", "model.embed_tokens.weight", random_mat(rng, vocab, kHidden, 0.5f), 0, false);
  for (int l = 0; l < kLayers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".", p = layer_prefix(l);
    add(b + "attn_norm.weight", p + "input_layernorm.weight", norm(), 0, true);
    add(b + "attn_q.weight", p + "self_attn.q_proj.weight", random_mat(rng, kHeads * kHd, kHidden, 0.2f), kHeads, false);
    add(b + "attn_k.weight", p + "self_attn.k_proj.weight", random_mat(rng, kKv * kHd, kHidden, 0.2f), kKv, false);
    add(b + "attn_v.weight", p + "self_attn.v_proj.weight", random_mat(rng, kKv * kHd, kHidden, 0.2f), 0, false);
    if (arch == "qwen2") {
      add(b + "attn_q.bias", p + "self_attn.q_proj.bias", random_mat(rng, 1, kHeads * kHd, 0.1f), 0, true);
      add(b + "attn_k.bias", p + "self_attn.k_proj.bias", random_mat(rng, 1, kKv * kHd, 0.1f), 0, true);
      add(b + "attn_v.bias", p + "self_attn.v_proj.bias", random_mat(rng, 1, kKv * kHd, 0.1f), 0, true);
    }
    add(b + "attn_output.weight", p + "self_attn.o_proj.weight", random_mat(rng, kHidden, kHeads * kHd, 0.2f), 0, false);
    add(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", norm(), 0, true);
    add(b + "ffn_gate.weight", p + "mlp.gate_proj.weight", random_mat(rng, kFfn, kHidden, 0.2f), 0, false);
    add(b + "ffn_up.weight", p + "mlp.up_proj.weight", random_mat(rng, kFfn, kHidden, 0.2f), 0, false);
    add(b + "ffn_down.weight", p + "mlp.down_proj.weight", random_mat(rng, kHidden, kFfn, 0.2f), 0, false);
  }
  add("output_norm.weight", "model.norm.weight", norm(), 0, true);
  if (!tied) add("output.weight", "lm_head.weight", random_mat(rng, vocab, kHidden, 0.5f), 0, false);
  return t;
}

}  // namespace ptq::test

// Small seeds for the fuzz corpora, beside the real files of ../shared (scripts/fuzz.sh): a real
// checkpoint is megabytes, and every fuzz input costs time in proportion to its size, so a
// tiny model of the same architecture gives the fuzzer fast inputs that still pass every check.
//   fuzz_make_seeds DIR   writes DIR/tiny-hf/{config.json,model.safetensors}, DIR/tiny.bin
//                         (the same weights as llama2.c), DIR/tiny-dtypes.safetensors (one
//                         tensor of every dtype), DIR/tiny-tokens.txt (token ids), GGUF files
//                         DIR/tiny.gguf (F32), DIR/tiny-q8.gguf (Q8_0 parts), DIR/tiny-qwen2.gguf,
//                         and DIR/tiny-tok/tokenizer{,_config}.json made from their tokenizer.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "calibration/tokenizer_json.h"
#include "formats/gguf_file.h"
#include "formats/safetensors.h"
#include "ptq/fs.h"
#include "ptq/model.h"
#include "support/gguf_builder.h"

namespace {

using ptq::Mat;

// Deterministic weights in [-0.5, 0.5) from our own mapping of mt19937_64 (docs/architecture.md).
Mat random_mat(std::mt19937_64& rng, int64_t rows, int64_t cols) {
  Mat m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = float(double(rng() >> 11) * 0x1.0p-53 - 0.5);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_seeds DIR\n");
    return 2;
  }
  namespace fs = std::filesystem;
  const std::string dir = argv[1];
  fs::create_directories(dir + "/tiny-hf");
  ptq::ModelConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_layers = 1;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 8;
  c.vocab_size = 32;
  c.max_position_embeddings = 32;
  c.tie_word_embeddings = true;
  std::mt19937_64 rng(7);
  const int64_t h = c.hidden_size, f = c.intermediate_size, kv = c.num_kv_heads * c.head_dim;
  // Tensors in llama2.c file order; each weight is [out, in].
  struct Named {
    std::string name;
    Mat m;
  };
  std::vector<Named> t;
  t.push_back({"model.embed_tokens.weight", random_mat(rng, c.vocab_size, h)});
  const std::string p = ptq::layer_prefix(0);
  t.push_back({p + "input_layernorm.weight", Mat::Ones(1, h)});
  t.push_back({p + "self_attn.q_proj.weight", random_mat(rng, h, h)});
  t.push_back({p + "self_attn.k_proj.weight", random_mat(rng, kv, h)});
  t.push_back({p + "self_attn.v_proj.weight", random_mat(rng, kv, h)});
  t.push_back({p + "self_attn.o_proj.weight", random_mat(rng, h, h)});
  t.push_back({p + "post_attention_layernorm.weight", Mat::Ones(1, h)});
  t.push_back({p + "mlp.gate_proj.weight", random_mat(rng, f, h)});
  t.push_back({p + "mlp.down_proj.weight", random_mat(rng, h, f)});
  t.push_back({p + "mlp.up_proj.weight", random_mat(rng, f, h)});
  t.push_back({"model.norm.weight", Mat::Ones(1, h)});

  ptq::SafetensorsWriter hf;
  for (const auto& [name, m] : t)
    hf.add_f32(name, m, m.rows() == 1 ? std::vector<int64_t>{m.cols()} : std::vector<int64_t>{m.rows(), m.cols()});
  hf.write(dir + "/tiny-hf/model.safetensors");
  ptq::write_file_atomic(dir + "/tiny-hf/config.json", c.to_json().dump(2) + "\n");

  // llama2.c: 7 x int32 header, the arrays in order, then the two RoPE tables it skips.
  const int32_t header[7] = {int32_t(h), int32_t(f), c.num_layers, c.num_heads, c.num_kv_heads, c.vocab_size,
                             c.max_position_embeddings};
  std::ofstream bin(dir + "/tiny.bin", std::ios::binary);
  bin.write(reinterpret_cast<const char*>(header), sizeof header);
  for (const auto& [name, m] : t) bin.write(reinterpret_cast<const char*>(m.data()), std::streamsize(m.size() * 4));
  const Mat rope = random_mat(rng, 2 * c.max_position_embeddings, c.head_dim / 2);
  bin.write(reinterpret_cast<const char*>(rope.data()), std::streamsize(rope.size() * 4));
  bin.close();

  ptq::SafetensorsWriter dtypes;
  const ptq::DType all[] = {ptq::DType::F32, ptq::DType::F16, ptq::DType::BF16, ptq::DType::I32,
                            ptq::DType::I16, ptq::DType::I8,  ptq::DType::U8};
  for (ptq::DType d : all) {
    std::vector<uint8_t> bytes(ptq::dtype_size(d) * 6);
    for (auto& b : bytes) b = uint8_t(rng() >> 56);
    dtypes.add(std::string("t.") + ptq::dtype_name(d), d, {2, 3}, bytes);
  }
  dtypes.add("t.empty", ptq::DType::F32, {0, 4}, {});
  dtypes.set_metadata("note", "one tensor of every dtype");
  dtypes.write(dir + "/tiny-dtypes.safetensors");

  std::ofstream tokens(dir + "/tiny-tokens.txt");
  for (int line = 0; line < 4; ++line) {
    for (int i = 0; i < 24; ++i) tokens << (rng() % uint64_t(c.vocab_size)) << (i + 1 < 24 ? " " : "\n");
  }

  // GGUF: the tests' tiny llama (hidden 64, 2 layers, byte-level BPE with merges and control
  // tokens), in the three variants the reader distinguishes.
  ptq::test::tiny_llama_gguf(3, true).gguf.write(dir + "/tiny.gguf");
  ptq::test::tiny_llama_gguf(4, false, true).gguf.write(dir + "/tiny-q8.gguf");
  ptq::test::tiny_llama_gguf(5, false, false, "qwen2").gguf.write(dir + "/tiny-qwen2.gguf");
  const ptq::Model gguf = ptq::Model::open(dir + "/tiny.gguf");
  fs::create_directories(dir + "/tiny-tok");
  ptq::write_file_atomic(dir + "/tiny-tok/tokenizer.json", ptq::tokenizer_json_from_metadata(*gguf.tokenizer_metadata()));
  ptq::write_file_atomic(dir + "/tiny-tok/tokenizer_config.json",
                         ptq::tokenizer_config_from_metadata(*gguf.tokenizer_metadata()));
  return 0;
}

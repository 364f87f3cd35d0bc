// GGUF files: the parser on every metadata type, the model source (names, hparams, q/k
// permutation, quantized tensors) against an HF copy of the same weights, the embedded
// tokenizer, and malformed files through the CLI (exit 2, file named, nothing written).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "calibration/text_data.h"
#include "calibration/tokenizer.h"
#include "formats/ggml_blocks.h"
#include "formats/gguf_file.h"
#include "formats/safetensors.h"
#include "ptq/error.h"
#include "ptq/fs.h"
#include "formats/loaded_model.h"
#include "ptq/generate.h"
#include "ptq/model.h"
#include "support/gguf_builder.h"
#include "support/run_cli.h"
#include "support/shared_data.h"

namespace ptq {
namespace {

namespace fs = std::filesystem;
using test::GgufBuilder;

TEST(GgufFile, ReadsEveryMetadataType) {
  GgufBuilder b;
  auto le16 = [](uint16_t v) { return std::string(reinterpret_cast<const char*>(&v), 2); };
  b.raw_kv("u8", 0, std::string(1, char(200)));
  b.raw_kv("i8", 1, std::string(1, char(-5)));
  b.raw_kv("u16", 2, le16(60000));
  b.raw_kv("i16", 3, le16(uint16_t(-300)));
  b.u32("u32", 4000000000u);
  b.i32("i32", -7);
  b.f32("f32", 0.25f);
  b.boolean("bool", true);
  b.str("string", "h\xC3\xA9llo");
  b.u64("u64", uint64_t(1) << 40);
  b.raw_kv("i64", 11, GgufBuilder::le64(uint64_t(-9)));
  double d = -1.5e300;
  uint64_t du;
  std::memcpy(&du, &d, 8);
  b.raw_kv("f64", 12, GgufBuilder::le64(du));
  b.str_array("strings", {"a", "", "ccc"});
  b.i32_array("ints", {3, -1, 4});
  b.f32_array("floats", {1.5f, -2.0f});
  b.raw_kv("bools", 9, GgufBuilder::le32(7) + GgufBuilder::le64(2) + std::string("\x01\x00", 2));
  b.u32("general.alignment", 64);
  Mat m(2, 32);
  for (int i = 0; i < m.size(); ++i) m.data()[i] = float(i);
  b.f32_tensor("t", m);
  const std::string path = test::temp_dir("gguf_types") + "/types.gguf";
  b.write(path, {3, 64});

  const GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.find("u8")->i, 200);
  EXPECT_EQ(f.find("i8")->i, -5);
  EXPECT_EQ(f.find("u16")->i, 60000);
  EXPECT_EQ(f.find("i16")->i, -300);
  EXPECT_EQ(f.required_uint("u32"), 4000000000u);
  EXPECT_EQ(f.find("i32")->i, -7);
  EXPECT_EQ(f.required_float("f32"), 0.25);
  EXPECT_EQ(f.optional_bool("bool"), true);
  EXPECT_EQ(f.required_string("string"), "h\xC3\xA9llo");
  EXPECT_EQ(f.required_uint("u64"), uint64_t(1) << 40);
  EXPECT_EQ(f.find("i64")->i, -9);
  EXPECT_EQ(f.required_float("f64"), -1.5e300);
  const GgufValue* s = f.optional_array("strings", true);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->type_string(), "ARRAY[STRING]");
  ASSERT_EQ(s->strings.size(), 3u);
  EXPECT_EQ(s->strings[2], "ccc");
  const GgufValue* ints = f.optional_array("ints", false);
  EXPECT_EQ(ints->int_at(1), -1);
  EXPECT_EQ(f.optional_array("floats", false)->float_at(0), 1.5);
  EXPECT_EQ(f.optional_array("bools", false)->int_at(0), 1);
  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_THROW(f.required_uint("i32"), Error);       // negative
  EXPECT_THROW(f.required_string("u32"), Error);     // wrong type
  EXPECT_THROW(f.optional_array("ints", true), Error);
  ASSERT_EQ(f.tensors().size(), 1u);
  const GgufTensorInfo& t = f.tensors()[0];
  EXPECT_EQ(t.ne, (std::vector<int64_t>{32, 2}));
  EXPECT_EQ(t.nbytes, 256u);
  std::vector<float> out(64);
  f.dequantize(t, out.data());
  for (int i = 0; i < 64; ++i) EXPECT_EQ(out[size_t(i)], float(i));
}

// Writes `model`'s weights and config as an HF directory.
std::string write_hf_copy(const test::TinyLlama& t, const ModelConfig& cfg, const std::string& dir) {
  write_file_atomic(dir + "/config.json", cfg.to_json().dump(2));
  SafetensorsWriter w;
  for (const auto& [name, m] : t.hf) {
    const bool vector = name.ends_with("norm.weight") || name.ends_with(".bias");
    w.add_f32(name, m, vector ? std::vector<int64_t>{m.cols()} : std::vector<int64_t>{m.rows(), m.cols()});
  }
  w.write(dir + "/model.safetensors");
  return dir;
}

TEST(GgufModel, TinyLlamaEqualsItsHfCopy) {
  // Untied F32, tied F32, tied with Q8_0 tensors, qwen2 (biases, no permutation).
  for (int variant = 0; variant < 4; ++variant) {
    const bool tied = variant > 0, quantized = variant == 2;
    const std::string arch = variant == 3 ? "qwen2" : "llama";
    const test::TinyLlama t = test::tiny_llama_gguf(7, tied, quantized, arch);
    const std::string tag = std::to_string(variant);
    const std::string dir = test::temp_dir("gguf_tiny_" + tag);
    t.gguf.write(dir + "/tiny.gguf");
    const Model g = Model::open(dir + "/tiny.gguf");
    const ModelConfig& c = g.config();
    EXPECT_EQ(c.hidden_size, 64);
    EXPECT_EQ(c.num_layers, 2);
    EXPECT_EQ(c.num_heads, 4);
    EXPECT_EQ(c.num_kv_heads, 2);
    EXPECT_EQ(c.head_dim, 16);
    EXPECT_EQ(c.intermediate_size, 128);
    EXPECT_EQ(c.vocab_size, 272);
    EXPECT_EQ(c.max_position_embeddings, 256);
    EXPECT_EQ(c.rope_theta, 500000.0);
    EXPECT_EQ(c.tie_word_embeddings, tied);
    EXPECT_EQ(c.attention_bias, arch == "qwen2");
    EXPECT_EQ(c.architecture, arch == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM");
    EXPECT_EQ(c.bos_token_id, 1);
    EXPECT_EQ(c.eos_token_id, 2);
    // Every tensor comes back in HF layout, q/k un-permuted, bit for bit.
    ASSERT_EQ(g.tensors().names().size(), t.hf.size());
    for (const auto& [name, m] : t.hf) {
      const Mat got = g.weight(name);
      ASSERT_EQ(got.rows(), m.rows()) << name;
      ASSERT_EQ(got.cols(), m.cols()) << name;
      EXPECT_EQ(std::memcmp(got.data(), m.data(), size_t(m.size()) * 4), 0) << name;
    }
    const Model hf = Model::open(write_hf_copy(t, c, test::temp_dir("gguf_tiny_hf_" + tag)));
    EXPECT_EQ(hf.config(), c);
    const LoadedModel a = load_model_for_inference(dir + "/tiny.gguf"), b = load_model_for_inference(hf.path());
    const std::vector<int32_t> ids = {1, 40, 41, 100, 7, 260, 3};
    const Mat la = a.forward->logits(ids), lb = b.forward->logits(ids);
    EXPECT_EQ(std::memcmp(la.data(), lb.data(), size_t(la.size()) * 4), 0);
  }
}


// llama.cpp's linear RoPE scaling is read (and written into the HF config of outputs); other
// scalings are refused by name.
TEST(GgufModel, LinearRopeScaling) {
  test::TinyLlama t = test::tiny_llama_gguf(7, true);
  const std::string dir = test::temp_dir("gguf_rope_linear");
  t.gguf.write(dir + "/plain.gguf");
  auto yarn = t.gguf;  // builders append keys, so each variant starts from a copy
  t.gguf.str("llama.rope.scaling.type", "linear");
  t.gguf.f32("llama.rope.scaling.factor", 4.0f);
  t.gguf.write(dir + "/linear.gguf");
  const Model g = Model::open(dir + "/linear.gguf");
  EXPECT_EQ(g.config().rope_scaling.type, "linear");
  EXPECT_EQ(g.config().rope_scaling.factor, 4.0);
  const Model hf = Model::open(write_hf_copy(t, g.config(), test::temp_dir("gguf_rope_linear_hf")));
  EXPECT_EQ(hf.config(), g.config());
  const std::vector<int32_t> ids = {1, 40, 41, 100, 7, 260, 3};
  const Mat scaled = load_model_for_inference(dir + "/linear.gguf").forward->logits(ids);
  const Mat from_hf = load_model_for_inference(hf.path()).forward->logits(ids);
  const Mat plain = load_model_for_inference(dir + "/plain.gguf").forward->logits(ids);
  EXPECT_EQ(std::memcmp(scaled.data(), from_hf.data(), size_t(scaled.size()) * 4), 0);
  EXPECT_GT((scaled - plain).cwiseAbs().maxCoeff(), 1e-4f);  // the scaling reaches the logits
  yarn.str("llama.rope.scaling.type", "yarn");
  yarn.write(dir + "/yarn.gguf");
  try {
    Model::open(dir + "/yarn.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("yarn"), std::string::npos) << e.what();
  }
}

TEST(GgufModel, EmbeddedTokenizerAndTheTokenizerJsonMadeFromIt) {
  const test::TinyLlama t = test::tiny_llama_gguf(3, true);
  const std::string dir = test::temp_dir("gguf_tok");
  t.gguf.write(dir + "/tiny.gguf");
  const Model m = Model::open(dir + "/tiny.gguf");
  ASSERT_NE(m.tokenizer_metadata(), nullptr);
  EXPECT_EQ(find_model_tokenizer(m.path(), ""), "");  // the GGUF's own comes first
  const auto tok = open_model_tokenizer(m, "");
  EXPECT_EQ(tok->kind(), "bpe");
  EXPECT_FALSE(tok->adds_bos());
  EXPECT_EQ(tok->vocab_size(), 272);
  // Ids 4..259 are the bytes, 260.. the merged tokens in merge order (gguf_builder.cpp).
  const std::vector<std::pair<std::string, std::vector<int32_t>>> cases = {
      {"hello world", {263, 268}},
      {"hello the", {263, 270}},
      {"12", {4 + '1', 4 + '2'}},  // smollm splits digits before the GPT-2 regex
  };
  for (const auto& [text, ids] : cases) EXPECT_EQ(tok->encode(text, false), ids) << text;
  EXPECT_EQ(tok->encode_with_special("<|im_start|>hello", false), (std::vector<int32_t>{1, 263}));
  EXPECT_EQ(tok->encode("<|im_start|>", false).size(), 12u);  // not parsed: one byte token each
  for (const std::string text : {"hello world", "<|im_end|> x\n\t y", "caf\xC3\xA9 \xF0\x9F\x98\x80 12 the"})
    EXPECT_EQ(tok->decode(tok->encode(text, false)), text);

  const std::string out = test::temp_dir("gguf_tok_out");
  const auto files = tokenizer_output_files(m, "");
  ASSERT_EQ(files.size(), 2u);
  for (const auto& f : files) {
    EXPECT_TRUE(f.copy_from.empty());
    write_file_atomic(out + "/" + f.name, f.text);
  }
  EXPECT_EQ(find_model_tokenizer(out, ""), out + "/tokenizer.json");
  const auto back = load_tokenizer(out + "/tokenizer.json");
  EXPECT_EQ(back->adds_bos(), tok->adds_bos());
  EXPECT_EQ(back->bos_id(), 1);
  EXPECT_EQ(back->eos_id(), 2);
  for (const std::string text : {"hello world", "<|im_end|> x\n\t y12", "the  hello   world"}) {
    EXPECT_EQ(back->encode(text, false), tok->encode(text, false)) << text;
    EXPECT_EQ(back->encode_with_special(text, false), tok->encode_with_special(text, false)) << text;
  }
}

// ---- malformed files ------------------------------------------------------------------------

struct BadFile {
  std::string name;
  std::string bytes;
  std::string fragment;  // expected in the error
};

std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

std::vector<BadFile> bad_gguf_files() {
  const test::TinyLlama base = test::tiny_llama_gguf(5, true);
  const std::string good = base.gguf.bytes();
  const std::string dir = test::temp_dir("gguf_bad_probe");
  write_file_atomic(dir + "/good.gguf", good);
  const GgufFile probe(dir + "/good.gguf");
  const size_t infos_end = size_t(probe.data_offset());
  using O = GgufBuilder::Options;
  auto with_options = [&](O o) { return base.gguf.bytes(o); };
  auto u64_at = [](std::string s, size_t at, uint64_t v) {
    std::memcpy(&s[at], &v, 8);
    return s;
  };
  std::vector<BadFile> v;
  v.push_back({"trunc_header", good.substr(0, 10), "truncated GGUF"});
  v.push_back({"trunc_kv", good.substr(0, 2000), "more than the rest of the file can hold"});
  v.push_back({"trunc_infos", good.substr(0, infos_end - 40), "truncated GGUF"});
  v.push_back({"trunc_data", good.substr(0, good.size() - 1000), "outside the file"});
  v.push_back({"magic", "GGUX" + good.substr(4), "not a GGUF file"});
  v.push_back({"version1", with_options(O{1}), "version 1"});
  v.push_back({"version4", with_options(O{4}), "unsupported GGUF version 4"});
  v.push_back({"n_tensors", u64_at(good, 8, uint64_t(1) << 60), "tensors, more than"});
  v.push_back({"n_kv", u64_at(good, 16, uint64_t(1) << 60), "metadata entries, more than"});
  v.push_back({"n_kv_short", u64_at(good, 16, 3), ""});  // tensor infos then read KV bytes: any clean error
  // The first key is general.architecture: its string length sits at 24 + 8 + 20 + 4.
  v.push_back({"string_length", u64_at(good, 56, uint64_t(1) << 62), "truncated GGUF"});
  v.push_back({"offset_outside", with_options(O{3, 32, -1, -1, 1 << 20}), "outside the file"});
  v.push_back({"misaligned", with_options(O{3, 32, -1, -1, 4}), "not a multiple of the alignment"});
  {
    GgufBuilder b = base.gguf;
    b.raw_kv("bad.array", 9, GgufBuilder::le32(5) + GgufBuilder::le64(uint64_t(1) << 40));
    v.push_back({"array_count", b.bytes(), "more than the rest of the file"});
  }
  {
    GgufBuilder b = base.gguf;
    b.raw_kv("bad.type", 13, GgufBuilder::le32(0));
    v.push_back({"kv_type", b.bytes(), "unknown value type 13"});
  }
  {
    GgufBuilder b = base.gguf;
    b.u32("llama.block_count", 2);
    v.push_back({"duplicate_key", b.bytes(), "duplicate metadata key 'llama.block_count'"});
  }
  {
    GgufBuilder b = base.gguf;
    b.tensor("extra.weight", {32}, 99, std::string(128, '\0'));
    v.push_back({"ggml_type", b.bytes(), "unknown ggml type id 99"});
  }
  {
    GgufBuilder b = base.gguf;
    b.tensor("huge.weight", {uint64_t(1) << 40, uint64_t(1) << 40}, 0, "");
    v.push_back({"ne_overflow", b.bytes(), "overflows 64 bits"});
  }
  {
    GgufBuilder b = base.gguf;
    b.tensor("output_norm.weight", {64}, 0, std::string(256, '\0'));
    v.push_back({"duplicate_tensor", b.bytes(), "duplicate tensor 'output_norm.weight'"});
  }
  {
    GgufBuilder b = base.gguf;
    b.tensor("blk.0.attn_output.bias", {64}, 0, std::string(256, '\0'));
    v.push_back({"unused_tensor", b.bytes(), "'blk.0.attn_output.bias' (model.layers.0.self_attn.o_proj.bias) is not used"});
  }
  {
    GgufBuilder b = base.gguf;
    b.tensor("blk.7.attn_q.weight", {64, 64}, 0, std::string(64 * 64 * 4, '\0'));
    v.push_back({"unmapped_tensor", b.bytes(), "no Hugging Face equivalent"});
  }
  {
    GgufBuilder b = base.gguf;
    b.tensor("extra.q4", {33}, 2, std::string(18, '\0'));
    v.push_back({"block_size", b.bytes(), "not a multiple of its block size 32"});
  }
  // Metadata-level problems: rename a key so it is missing, or retype one.
  v.push_back({"missing_key", replace_once(good, "layer_norm_rms_epsilon", "layer_norm_rms_epsiloN"),
               "missing required metadata key 'llama.attention.layer_norm_rms_epsilon'"});
  {
    // "llama.block_count" typed U32 (4) -> STRING (8) with a 4-byte length prefix would shift the
    // file, so retype it to F32 (6), a number that is not an integer type.
    const std::string key = GgufBuilder::gguf_string("llama.block_count") + GgufBuilder::le32(4);
    v.push_back({"key_type", replace_once(good, key, GgufBuilder::gguf_string("llama.block_count") + GgufBuilder::le32(6)),
                 "'llama.block_count' must be a non-negative integer, found F32"});
  }
  {
    // A block_count no tensor list could hold (found by the gguf fuzz harness: 300M blocks made
    // Model::required_tensors list 2.7 billion names before any tensor was checked).
    const std::string key = GgufBuilder::gguf_string("llama.block_count") + GgufBuilder::le32(4);
    v.push_back({"block_count", replace_once(good, key + GgufBuilder::le32(2), key + GgufBuilder::le32(300000000)),
                 "fewer than 9 per block"});
  }
  v.push_back({"architecture", replace_once(good, GgufBuilder::gguf_string("llama") + GgufBuilder::gguf_string("general.name"),
                                            GgufBuilder::gguf_string("gptxx") + GgufBuilder::gguf_string("general.name")),
               "unsupported GGUF architecture 'gptxx'"});
  {
    GgufBuilder b = base.gguf;
    b.remove_tensor("blk.1.ffn_down.weight");
    v.push_back({"missing_tensor", b.bytes(), "missing tensor 'blk.1.ffn_down.weight'"});
  }
  {
    // ffn 128 -> 96 in the metadata: the MLP tensors now disagree with the hparams.
    const std::string key = GgufBuilder::gguf_string("llama.feed_forward_length") + GgufBuilder::le32(4);
    v.push_back({"shape", replace_once(good, key + GgufBuilder::le32(128), key + GgufBuilder::le32(96)),
                 "has ne [64, 128], expected ne [64, 96]"});
  }
  v.push_back({"pre_tokenizer", replace_once(good, GgufBuilder::gguf_string("smollm"), GgufBuilder::gguf_string("smolXX")),
               "unknown pre-tokenizer 'smolXX'"});
  {
    // A merge whose parts are not tokens.
    v.push_back({"merge", replace_once(good, GgufBuilder::gguf_string("o r"), GgufBuilder::gguf_string("o\xC3\xBF")),
                 "is not two tokens separated by a space"});
  }
  return v;
}

TEST(GgufMalformed, EveryBadFileIsACleanErrorNamingItAndWritesNothing) {
  PTQ_REQUIRE_SHARED("data/pydoc/eval.txt", text);
  const std::vector<BadFile> files = bad_gguf_files();
  ASSERT_GE(files.size(), 20u);
  const std::string dir = test::temp_dir("gguf_bad");
  // The same harness on the good file succeeds, so every failure below is the file's.
  const std::string good = dir + "/good.gguf";
  test::tiny_llama_gguf(5, true).gguf.write(good);
  const test::CliResult ok = test::run_ptq("eval " + good + " --data " + text + " --data-format text --seq-len 8 --max-samples 1 --quiet");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  const test::CliResult ok2 = test::run_ptq("compress " + good + " --method rtn --bits 4 --group-size 32 --format fake --out " + dir + "/good_out");
  ASSERT_EQ(ok2.exit_code, 0) << ok2.err;
  EXPECT_TRUE(fs::exists(dir + "/good_out/tokenizer.json"));
  for (const auto& f : files) {
    const std::string path = dir + "/" + f.name + ".gguf";
    write_file_atomic(path, f.bytes);
    const std::string out = dir + "/out_" + f.name;
    const test::CliResult eval = test::run_ptq("eval " + path + " --data " + text + " --data-format text --seq-len 8 --max-samples 1 --quiet");
    EXPECT_EQ(eval.exit_code, 2) << f.name << ": " << eval.err;
    EXPECT_EQ(eval.out, "") << f.name;
    EXPECT_EQ(std::count(eval.err.begin(), eval.err.end(), '\n'), 1) << f.name << ": " << eval.err;
    EXPECT_NE(eval.err.find(path), std::string::npos) << f.name << ": " << eval.err;
    EXPECT_NE(eval.err.find(f.fragment), std::string::npos) << f.name << ": '" << f.fragment << "' not in " << eval.err;
    const test::CliResult compress =
        test::run_ptq("compress " + path + " --method rtn --bits 4 --group-size 32 --format fake --out " + out);
    EXPECT_EQ(compress.exit_code, 2) << f.name << ": " << compress.err;
    EXPECT_NE(compress.err.find(path), std::string::npos) << f.name << ": " << compress.err;
    for (const auto& e : fs::directory_iterator(dir))
      EXPECT_EQ(e.path().filename().string().rfind("out_" + f.name, 0), std::string::npos)
          << f.name << " left " << e.path();
  }
}

}  // namespace
}  // namespace ptq

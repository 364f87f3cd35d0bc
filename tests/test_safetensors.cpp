#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "formats/safetensors.h"
#include "formats/tensor_sources.h"
#include "ptq/error.h"
#include "ptq/fs.h"
#include "ptq/model.h"
#include "support/shared_data.h"
#include "support/synthetic.h"

namespace fs = std::filesystem;
using ptq::DType;

namespace {

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A safetensors file with an arbitrary header text and data buffer.
std::string craft(const std::string& dir, const std::string& name, const std::string& header,
                  size_t data_bytes, int64_t header_len_override = -1) {
  std::string bytes(8, '\0');
  uint64_t n = header_len_override >= 0 ? uint64_t(header_len_override) : header.size();
  for (int i = 0; i < 8; ++i) bytes[i] = char(n >> (8 * i));
  bytes += header;
  bytes.append(data_bytes, '\0');
  const std::string path = dir + "/" + name;
  ptq::write_file_atomic(path, bytes);
  return path;
}

void expect_error(const std::string& path, const std::string& fragment) {
  try {
    ptq::SafetensorsFile f(path);
    FAIL() << "expected ptq::Error for " << path;
  } catch (const ptq::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(path, 0), 0u) << "message should start with the path: " << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

}  // namespace

TEST(Safetensors, WriteReadWriteIsByteExact) {
  const std::string dir = ptq::test::temp_dir("st_roundtrip");
  ptq::SafetensorsWriter w;
  ptq::Mat m(3, 5);
  for (int i = 0; i < m.size(); ++i) m.data()[i] = 0.25f * float(i) - 1.0f;
  w.add_f32("b.weight", m);
  w.add_f32("a.norm", ptq::Mat::Constant(1, 7, 2.5f), {7});
  w.add("c.half", DType::F16, {3}, {0, 0x3c, 0, 0x40, 0, 0xc0});  // 1, 2, -2
  w.add("d.empty", DType::I8, {0, 4}, {});
  w.set_metadata("format", "pt");
  w.write(dir + "/one.safetensors");

  ptq::SafetensorsFile f(dir + "/one.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  ASSERT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.tensors().at("a.norm").shape, std::vector<int64_t>{7});
  ptq::SafetensorsWriter again;
  for (const auto& [name, info] : f.tensors()) {
    const uint8_t* p = info.nbytes ? f.data(name) : nullptr;
    again.add(name, info.dtype, info.shape, std::vector<uint8_t>(p, p + info.nbytes));
  }
  for (const auto& [k, v] : f.metadata()) again.set_metadata(k, v);
  again.write(dir + "/two.safetensors");
  EXPECT_EQ(file_bytes(dir + "/one.safetensors"), file_bytes(dir + "/two.safetensors"));

  // Layout promises: header padded to 8 bytes, __metadata__ first, tensors contiguous in name order.
  auto bytes = file_bytes(dir + "/one.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  std::string header(bytes.begin() + 8, bytes.begin() + 8 + long(n));
  EXPECT_EQ(header.rfind("{\"__metadata__\"", 0), 0u) << header;
  EXPECT_EQ(bytes.size(), 8 + n + 7 * 4 + 15 * 4 + 6);
  float first;
  std::memcpy(&first, bytes.data() + 8 + n, 4);
  EXPECT_EQ(first, 2.5f);  // a.norm comes first
}

TEST(Safetensors, NoMetadataKeyWhenEmpty) {
  const std::string dir = ptq::test::temp_dir("st_nometa");
  ptq::SafetensorsWriter w;
  w.add_f32("x", ptq::Mat::Ones(2, 2));
  w.write(dir + "/x.safetensors");
  auto bytes = file_bytes(dir + "/x.safetensors");
  std::string text(bytes.begin(), bytes.end());
  EXPECT_EQ(text.find("__metadata__"), std::string::npos);
  EXPECT_TRUE(ptq::SafetensorsFile(dir + "/x.safetensors").metadata().empty());
}

TEST(Safetensors, HalfPrecisionConvertsOnLoad) {
  const std::string dir = ptq::test::temp_dir("st_half");
  const std::vector<float> values = {1.0f, -2.5f, 0.099975586f, 65504.0f, 0.0f, -0.00006103515625f};
  std::vector<uint8_t> f16, bf16;
  for (float v : values) {
    uint16_t h = ptq::f32_to_f16(v), b = ptq::f32_to_bf16(v);
    f16.push_back(uint8_t(h)), f16.push_back(uint8_t(h >> 8));
    bf16.push_back(uint8_t(b)), bf16.push_back(uint8_t(b >> 8));
  }
  ptq::SafetensorsWriter w;
  w.add("h", DType::F16, {2, 3}, f16);
  w.add("b", DType::BF16, {6}, bf16);
  w.write(dir + "/model.safetensors");
  std::vector<std::string> files;
  auto src = ptq::open_hf_tensors(dir, &files);
  ptq::Mat h = src->load_f32("h");
  ASSERT_EQ(h.rows(), 2);
  ASSERT_EQ(h.cols(), 3);
  ptq::Mat b = src->load_f32("b");
  ASSERT_EQ(b.rows(), 1);
  ASSERT_EQ(b.cols(), 6);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(h.data()[i], ptq::f16_to_f32(ptq::f32_to_f16(values[i]))) << i;
    EXPECT_NEAR(h.data()[i], values[i], std::abs(values[i]) * 1e-3f) << i;
    EXPECT_EQ(b(0, i), ptq::bf16_to_f32(ptq::f32_to_bf16(values[i]))) << i;
    EXPECT_NEAR(b(0, i), values[i], std::abs(values[i]) * 1e-2f) << i;
  }
  EXPECT_EQ(src->find("h")->dtype, DType::F16);
  EXPECT_EQ(src->load_raw("b"), bf16);
}

TEST(Safetensors, ShardedIndexOpensThroughModel) {
  const std::string single = ptq::test::temp_dir("st_shard_single");
  ptq::synthetic::LlamaShape shape;
  shape.hidden = 32, shape.layers = 2, shape.heads = 4, shape.kv_heads = 2, shape.ffn = 48, shape.vocab = 64;
  shape.seed = 7;
  ptq::synthetic::write_llama(single, shape);
  const ptq::Model whole = ptq::Model::open(single);

  // Split the same tensors over two shards: layer 1 goes to the second.
  const std::string dir = ptq::test::temp_dir("st_shard");
  fs::copy_file(single + "/config.json", dir + "/config.json");
  ptq::SafetensorsWriter a, b;
  nlohmann::json map = nlohmann::json::object();
  for (const auto& name : whole.tensors().names()) {
    const bool second = name.rfind(ptq::layer_prefix(1), 0) == 0;
    const ptq::TensorInfo* t = whole.tensors().find(name);
    (second ? b : a).add(name, t->dtype, t->shape, whole.tensors().load_raw(name));
    map[name] = second ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
  }
  a.write(dir + "/model-00001-of-00002.safetensors");
  b.write(dir + "/model-00002-of-00002.safetensors");
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", map}};
  ptq::write_file_atomic(dir + "/model.safetensors.index.json", index.dump(2));

  const ptq::Model sharded = ptq::Model::open(dir);
  EXPECT_EQ(sharded.config(), whole.config());
  ASSERT_EQ(sharded.tensors().names(), whole.tensors().names());
  for (const auto& name : whole.tensors().names())
    EXPECT_TRUE(sharded.weight(name) == whole.weight(name)) << name;
  EXPECT_EQ(sharded.tensors().find("model.layers.1.mlp.up_proj.weight")->file,
            dir + "/model-00002-of-00002.safetensors");
  EXPECT_EQ(sharded.parameter_count(), whole.parameter_count());
  EXPECT_NE(sharded.checksum(), whole.checksum());

  // A name the index promises but its shard lacks.
  map["model.extra.weight"] = "model-00001-of-00002.safetensors";
  index["weight_map"] = map;
  ptq::write_file_atomic(dir + "/model.safetensors.index.json", index.dump(2));
  try {
    ptq::Model::open(dir);
    FAIL() << "expected ptq::Error";
  } catch (const ptq::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.safetensors.index.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.extra.weight"), std::string::npos) << msg;
  }
}

TEST(SafetensorsErrors, TruncatedFile) {
  const std::string dir = ptq::test::temp_dir("st_err_trunc");
  const std::string path = dir + "/trunc.safetensors";
  ptq::write_file_atomic(path, std::string("\x10\x00\x00", 3));
  expect_error(path, "truncated");
}

TEST(SafetensorsErrors, HeaderLengthLargerThanFile) {
  const std::string dir = ptq::test::temp_dir("st_err_len");
  expect_error(craft(dir, "len.safetensors", "{}", 0, 4096), "header length 4096");
}

TEST(SafetensorsErrors, MalformedJson) {
  const std::string dir = ptq::test::temp_dir("st_err_json");
  expect_error(craft(dir, "bad.safetensors", "{\"x\": {\"dtype\": \n", 0), "malformed JSON");
}

TEST(SafetensorsErrors, HeaderNotAnObject) {
  const std::string dir = ptq::test::temp_dir("st_err_array");
  expect_error(craft(dir, "arr.safetensors", "[1, 2]", 0), "JSON object");
}

TEST(SafetensorsErrors, UnknownDtype) {
  const std::string dir = ptq::test::temp_dir("st_err_dtype");
  expect_error(craft(dir, "dtype.safetensors",
                     R"({"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})", 16),
               "tensor 'w': unknown dtype 'F64'");
}

TEST(SafetensorsErrors, BadShape) {
  const std::string dir = ptq::test::temp_dir("st_err_shape");
  expect_error(craft(dir, "neg.safetensors", R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
               "tensor 'w': expected 'shape'");
  expect_error(craft(dir, "str.safetensors", R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8),
               "tensor 'w': expected 'shape'");
}

TEST(SafetensorsErrors, BadDataOffsets) {
  const std::string dir = ptq::test::temp_dir("st_err_offsets");
  expect_error(craft(dir, "rev.safetensors", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8),
               "begin <= end");
  expect_error(craft(dir, "one.safetensors", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", 8),
               "[begin, end]");
}

TEST(SafetensorsErrors, SpanOutsideFile) {
  const std::string dir = ptq::test::temp_dir("st_err_span");
  expect_error(craft(dir, "span.safetensors", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
               "tensor 'w': data_offsets [0,16] lie outside the data buffer of 8 bytes");
}

TEST(SafetensorsErrors, ShapeByteMismatch) {
  const std::string dir = ptq::test::temp_dir("st_err_mismatch");
  expect_error(craft(dir, "mm.safetensors", R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", 16),
               "tensor 'w': shape [2,3] x F32 needs 24 bytes but data_offsets [0,16] span 16");
}

TEST(SafetensorsErrors, OverlappingSpans) {
  const std::string dir = ptq::test::temp_dir("st_err_overlap");
  expect_error(craft(dir, "ov.safetensors",
                     R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16),
               "tensor 'b' span starting at 8 overlaps tensor 'a'");
}

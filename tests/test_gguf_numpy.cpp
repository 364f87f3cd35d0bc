// ptq's dequantization against the gguf Python package's (numpy, gguf==0.19.0), bit for bit: a
// file with random blocks of every type ptq reads, and every tensor of SmolLM2-135M's GGUF. The
// package is pip-installed into build/venv-gguf (pinned, reused); the test skips with a message
// when PyPI cannot be reached.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "formats/ggml_blocks.h"
#include "formats/gguf_file.h"
#include "ptq/sha256.h"
#include "ptq/tensor.h"
#include "support/gguf_builder.h"
#include "support/shared_data.h"

namespace ptq {
namespace {

namespace fs = std::filesystem;

const std::string kVenv = std::string(PTQ_BINARY_DIR) + "/venv-gguf";
constexpr const char* kPackages = "gguf==0.19.0 numpy==2.4.6 PyYAML==6.0.4";

// The venv's python, installing it on first use (under a lock: ctest runs tests in parallel);
// "" with `why` set when that is impossible here.
std::string gguf_python(std::string* why) {
  const std::string python = kVenv + "/bin/python";
  const std::string check = python + " -c 'import gguf.quants' >/dev/null 2>&1";
  const std::string install = "python3 -m venv " + kVenv + " && " + kVenv + "/bin/pip install -q --no-deps " +
                              kPackages;
  const std::string cmd = "flock " + kVenv + ".lock sh -c \"(" + check + ") || (" + install + ")\" > " + kVenv +
                          ".log 2>&1";
  if (std::system(cmd.c_str()) != 0 || std::system(check.c_str()) != 0) {
    *why = "cannot pip-install " + std::string(kPackages) + " into " + kVenv + " (offline?); see " + kVenv + ".log";
    return "";
  }
  return python;
}

nlohmann::json run_reference(const std::string& python, const std::string& gguf, const std::string& raw_dir) {
  const std::string out = fs::path(gguf).replace_extension(".ref.json").string();
  const std::string cmd = "timeout 900 " + python + " " + PTQ_SOURCE_DIR + "/tests/python/gguf_dequant.py " + gguf +
                          " " + out + (raw_dir.empty() ? "" : " " + raw_dir);
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(out);
  return nlohmann::json::parse(in);
}

// Random blocks of `type` whose fp16 fields (at `half_offsets` in each block) hold finite values,
// subnormals included; the other bytes are uniformly random.
std::string random_blocks(std::mt19937_64& rng, GgmlType type, int64_t blocks, std::vector<int> half_offsets) {
  const uint32_t size = ggml_traits(type).type_size;
  std::string out(size_t(blocks) * size, '\0');
  for (char& c : out) c = char(rng() >> 56);
  for (int64_t b = 0; b < blocks; ++b)
    for (int off : half_offsets) {
      uint16_t h;
      do h = uint16_t(rng() >> 48);
      while (((h >> 10) & 0x1f) == 0x1f);
      std::memcpy(&out[size_t(b) * size + size_t(off)], &h, 2);
    }
  return out;
}

void expect_bit_identical(const GgufFile& f, const nlohmann::json& ref, const std::string& raw_dir) {
  ASSERT_EQ(ref.size(), f.tensors().size());
  for (const auto& t : f.tensors()) {
    SCOPED_TRACE(t.name + " " + ggml_type_name(t.type));
    ASSERT_TRUE(ref.contains(t.name));
    ASSERT_EQ(ref[t.name]["n"].get<int64_t>(), t.n_elements);
    std::vector<float> ours(size_t(t.n_elements));
    f.dequantize(t, ours.data());
    const std::string hash = sha256_hex(std::string_view(reinterpret_cast<const char*>(ours.data()), ours.size() * 4));
    if (hash == ref[t.name]["sha256"].get<std::string>()) continue;
    ADD_FAILURE() << "dequantized bytes differ from gguf's";
    if (raw_dir.empty()) continue;
    std::ifstream in(raw_dir + "/" + t.name + ".f32", std::ios::binary);
    std::vector<float> theirs(ours.size());
    in.read(reinterpret_cast<char*>(theirs.data()), std::streamsize(theirs.size() * 4));
    for (size_t i = 0; i < ours.size(); ++i)
      if (std::memcmp(&ours[i], &theirs[i], 4) != 0) {
        ADD_FAILURE() << "first difference at element " << i << ": ptq " << ours[i] << ", gguf " << theirs[i];
        break;
      }
  }
}

TEST(GgufNumpy, EveryBlockTypeDequantizesLikeTheGgufPackage) {
  std::string why;
  const std::string python = gguf_python(&why);
  if (python.empty()) GTEST_SKIP() << why;
  std::mt19937_64 rng(20241201);
  test::GgufBuilder b;
  struct Case {
    GgmlType type;
    std::vector<int> halves;  // byte offsets of fp16 fields in a block
    uint64_t k;               // row length
  };
  const Case cases[] = {{GgmlType::Q4_0, {0}, 128},       {GgmlType::Q4_1, {0, 2}, 128},
                        {GgmlType::Q5_0, {0}, 128},       {GgmlType::Q5_1, {0, 2}, 128},
                        {GgmlType::Q8_0, {0}, 128},       {GgmlType::Q2_K, {80, 82}, 512},
                        {GgmlType::Q3_K, {108}, 512},     {GgmlType::Q4_K, {0, 2}, 512},
                        {GgmlType::Q5_K, {0, 2}, 512},    {GgmlType::Q6_K, {208}, 512}};
  for (const Case& c : cases) {
    const int64_t rows = 24, blocks = rows * int64_t(c.k / ggml_traits(c.type).block_size);
    b.tensor(std::string("t_") + ggml_type_name(c.type), {c.k, uint64_t(rows)}, uint32_t(c.type),
             random_blocks(rng, c.type, blocks, c.halves));
  }
  // Every fp16 and bf16 bit pattern (NaNs and infinities included: no arithmetic there), and
  // random f32 bits.
  std::string halves(65536 * 2, '\0');
  for (uint32_t i = 0; i < 65536; ++i) std::memcpy(&halves[i * 2], &i, 2);
  b.tensor("t_F16", {65536}, uint32_t(GgmlType::F16), halves);
  b.tensor("t_BF16", {65536}, uint32_t(GgmlType::BF16), halves);
  std::string f32(4096 * 4, '\0');
  for (char& ch : f32) ch = char(rng() >> 56);
  b.tensor("t_F32", {4096}, uint32_t(GgmlType::F32), f32);

  const std::string dir = test::temp_dir("gguf_numpy_blocks");
  b.write(dir + "/blocks.gguf");
  const nlohmann::json ref = run_reference(python, dir + "/blocks.gguf", dir);
  const GgufFile f(dir + "/blocks.gguf");
  expect_bit_identical(f, ref, dir);
}

TEST(GgufNumpy, SmolLM2TensorsDequantizeLikeTheGgufPackage) {
  PTQ_REQUIRE_SHARED("models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf", model);
  std::string why;
  const std::string python = gguf_python(&why);
  if (python.empty()) GTEST_SKIP() << why;
  const std::string dir = test::temp_dir("gguf_numpy_smollm2");
  const std::string link = dir + "/smollm2.gguf";  // the reference JSON goes beside it
  fs::create_symlink(model, link);
  const nlohmann::json ref = run_reference(python, link, "");
  const GgufFile f(model);
  expect_bit_identical(f, ref, "");
}

}  // namespace
}  // namespace ptq

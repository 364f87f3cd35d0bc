// Every bad input of the reliability issue (docs/reliability.md, "Bad inputs"), through the CLI
// as a user meets it: exit code 2, one line on stderr starting "ptq: error: " and naming the file,
// tensor or field; nothing the user owns is touched. Each case also appends its actual first
// line to build/test_tmp/reliability_cases.md, from which the table in the doc is copied.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "formats/safetensors.h"
#include "ptq/fs.h"
#include "support/file_hashes.h"
#include "support/run_cli.h"
#include "support/shared_data.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ptq {
namespace {

// The error line: the one stderr line starting "ptq: error: ", which must be the last (progress
// and format notes may come before it).
std::string error_line(const std::string& err) {
  const size_t at = err.rfind("ptq: error: ");
  if (at == std::string::npos || (at > 0 && err[at - 1] != '\n')) return "";
  const std::string line = err.substr(at, err.find('\n', at) - at);
  return err.find("ptq: error: ") == at && at + line.size() + 1 >= err.size() ? line : "";
}

// Runs ptq, expects exit 2 with one error line holding every fragment; records the case.
void expect_refused(const std::string& id, const std::string& args, std::initializer_list<std::string> fragments,
                    const std::string& env = "") {
  const test::CliResult r = test::run_ptq(args, env);
  const std::string line = error_line(r.err);
  EXPECT_EQ(r.exit_code, 2) << id << ": " << r.err;
  EXPECT_FALSE(line.empty()) << id << ": expected one 'ptq: error: ' line, last on stderr: " << r.err;
  for (const auto& f : fragments) EXPECT_NE(line.find(f), std::string::npos) << id << ": '" << f << "' not in: " << line;
  std::ofstream(fs::path(PTQ_BINARY_DIR) / "test_tmp" / "reliability_cases.md", std::ios::app)
      << "| " << id << " | " << r.exit_code << " | `" << line << "` |\n";
}

struct Stories {
  std::string hf, bin, tok_bin, tok_model, data;
};

#define REQUIRE_STORIES(s)                                                            \
  PTQ_REQUIRE_SHARED("models/stories260K/hf", hf_);                                   \
  PTQ_REQUIRE_SHARED("models/stories260K/stories260K.bin", bin_);                     \
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.bin", tokbin_);                       \
  PTQ_REQUIRE_SHARED("models/stories260K/tok512.model", tokmodel_);                   \
  PTQ_REQUIRE_SHARED("data/tinystories/validation_100.txt", data_);                   \
  const Stories s{hf_, bin_, tokbin_, tokmodel_, data_}

// A copy of stories260K's HF directory with config.json edited and one float of one tensor set.
std::string hf_variant(const Stories& s, const std::string& name, const std::function<void(json&)>& edit_config,
                       const std::string& tensor = "", float value = 0.0f) {
  const std::string dir = test::temp_dir(name);
  json cfg = json::parse(read_text_file(s.hf + "/config.json"));
  if (edit_config) edit_config(cfg);
  write_file_atomic(dir + "/config.json", cfg.dump(2));
  SafetensorsFile in(s.hf + "/model.safetensors");
  SafetensorsWriter out;
  for (const auto& [n, info] : in.tensors()) {
    const uint8_t* p = in.data(n);
    std::vector<uint8_t> bytes(p, p + info.nbytes);
    if (n == tensor) std::memcpy(bytes.data() + 4 * 3, &value, 4);  // element 3
    out.add(n, info.dtype, info.shape, std::move(bytes));
  }
  out.write(dir + "/model.safetensors");
  fs::copy_file(s.hf + "/tokenizer.model", dir + "/tokenizer.model");
  return dir;
}

std::string rtn_args(const Stories& s, const std::string& model, const std::string& out) {
  return "compress " + model + " --method rtn --group-size 32 --quiet --out " + out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// ---- 1. Nothing at OUT is lost ---------------------------------------------------------------

TEST(Reliability, OutIsADirectoryWithOtherFiles) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_out_foreign");
  fs::create_directories(d + "/out/sub");
  std::ofstream(d + "/out/notes.txt") << "precious";
  std::ofstream(d + "/out/sub/data.bin") << "more";
  const auto before = test::file_hashes(d + "/out");
  expect_refused("`compress --out DIR` (DIR holds other files)", rtn_args(s, s.hf, d + "/out"),
                 {d + "/out: exists and is not a ptq checkpoint", "notes.txt", "--overwrite"});
  EXPECT_EQ(test::file_hashes(d + "/out"), before);
  EXPECT_FALSE(fs::exists(d + "/out.partial"));
  EXPECT_FALSE(fs::exists(d + "/out.partial.lock"));
  // A job's output.dir is the same check.
  std::ofstream(d + "/job.yaml") << "model: {path: " << s.hf << "}\nrecipe: \"rtn(w4,g32)\"\noutput: {dir: " << d
                                 << "/out}\n";
  expect_refused("job `output.dir` holds other files", "run " + d + "/job.yaml --quiet",
                 {d + "/out: exists and is not a ptq checkpoint"});
  EXPECT_EQ(test::file_hashes(d + "/out"), before);
}

TEST(Reliability, OutIsAFile) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_out_file");
  std::ofstream(d + "/model.bin") << "not a directory";
  expect_refused("`compress --out FILE`", rtn_args(s, s.hf, d + "/model.bin"),
                 {d + "/model.bin: exists and is not a directory"});
  expect_refused("`compress --out FILE --overwrite`", rtn_args(s, s.hf, d + "/model.bin") + " --overwrite",
                 {d + "/model.bin: exists and is not a directory"});
  EXPECT_EQ(slurp(d + "/model.bin"), "not a directory");
}

TEST(Reliability, OverwriteAddsBesideForeignFilesAndNeverReplacesThem) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_overwrite_foreign");
  fs::create_directories(d + "/out");
  std::ofstream(d + "/out/notes.txt") << "precious";
  auto r = test::run_ptq(rtn_args(s, s.hf, d + "/out") + " --overwrite");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(slurp(d + "/out/notes.txt"), "precious");
  EXPECT_TRUE(fs::exists(d + "/out/model.safetensors"));
  EXPECT_TRUE(fs::exists(d + "/out/ptq-output.json"));
  // A file of the user's under a name ptq writes is never replaced.
  fs::create_directories(d + "/out2");
  std::ofstream(d + "/out2/config.json") << "{\"mine\": true}";
  expect_refused("`--overwrite` into a directory holding the user's config.json",
                 rtn_args(s, s.hf, d + "/out2") + " --overwrite", {d + "/out2: holds 'config.json'"});
  EXPECT_EQ(slurp(d + "/out2/config.json"), "{\"mine\": true}");
  // Sidecar names are ptq's too: refused before any work.
  fs::create_directories(d + "/out3");
  std::ofstream(d + "/out3/special_tokens_map.json") << "{}";
  expect_refused("`--overwrite` into a directory holding the user's special_tokens_map.json",
                 rtn_args(s, s.hf, d + "/out3") + " --overwrite", {d + "/out3: holds 'special_tokens_map.json'"});
  EXPECT_EQ(slurp(d + "/out3/special_tokens_map.json"), "{}");
}

TEST(Reliability, SameJobReplacesItsOutputOtherJobNeedsOverwrite) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_same_job");
  const std::string out = d + "/out";
  ASSERT_EQ(test::run_ptq(rtn_args(s, s.hf, out)).exit_code, 0);
  const auto first = test::file_hashes(out);
  std::ofstream(out + "/README.md") << "my notes";  // the user's addition survives every rerun
  auto again = test::run_ptq(rtn_args(s, s.hf, out));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  auto now = test::file_hashes(out);
  now.erase("README.md");
  EXPECT_EQ(now, first);
  expect_refused("`compress --out OUT` (OUT holds another job's checkpoint)",
                 rtn_args(s, s.hf, out) + " --bits 3", {out + ": holds a ptq checkpoint of another job"});
  auto forced = test::run_ptq(rtn_args(s, s.hf, out) + " --bits 3 --overwrite");
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_EQ(slurp(out + "/README.md"), "my notes");
  EXPECT_NE(test::file_hashes(out).at("model.safetensors"), first.at("model.safetensors"));
  EXPECT_FALSE(fs::exists(out + ".partial"));
}

// ---- 3. Absurd group sizes and packed sources -----------------------------------------------

TEST(Reliability, HugeGroupSizeIsOneGroupPerRow) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_group_huge");
  auto r = test::run_ptq("compress " + s.hf + " --method rtn --group-size 2147483647 --quiet --out " + d + "/out");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  SafetensorsFile st(d + "/out/model.safetensors");
  EXPECT_EQ(st.tensors().at("model.layers.0.mlp.down_proj.scales").shape[0], 1);  // one group per row
  // The same value in a packed checkpoint's quantization_config reads back.
  json cfg = json::parse(read_text_file(d + "/out/config.json"));
  EXPECT_EQ(cfg["quantization_config"]["group_size"], 2147483647);
  auto e = test::run_ptq("eval " + d + "/out --data " + s.data + " --data-format tinystories --max-samples 2 --json");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_TRUE(std::isfinite(json::parse(e.out)["ppl"].get<double>()));
}

TEST(Reliability, JobOnAPackedCheckpoint) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_job_packed");
  ASSERT_EQ(test::run_ptq(rtn_args(s, s.hf, d + "/packed")).exit_code, 0);
  std::ofstream(d + "/job.yaml") << "model: {path: " << d << "/packed}\nrecipe: rtn\noutput: {dir: " << d << "/o}\n";
  expect_refused("job whose `model.path` is a packed checkpoint", "run " + d + "/job.yaml",
                 {"job.yaml:1:", "already quantized"});
}

// ---- 4. Uncaught exceptions: json types and ranges, huge counts, directories ---------------

TEST(Reliability, ConfigJsonTypesAndRanges) {
  REQUIRE_STORIES(s);
  const std::string a = hf_variant(s, "rel_cfg_type", [](json& c) { c["model_type"] = 512; });
  expect_refused("config.json `\"model_type\": 512`", "inspect " + a, {a + "/config.json: field 'model_type' must be a string"});
  const std::string b = hf_variant(s, "rel_cfg_1e400", nullptr);
  std::string text = read_text_file(b + "/config.json");
  const size_t at = text.find("\"rms_norm_eps\"");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, text.find(',', at) - at, "\"rms_norm_eps\": 1e400");
  write_file_atomic(b + "/config.json", text);
  expect_refused("config.json `\"rms_norm_eps\": 1e400`", "inspect " + b, {b + "/config.json: malformed JSON: number overflow"});
  const std::string c = hf_variant(s, "rel_cfg_layers", [](json& c) { c["num_hidden_layers"] = 2147483647; });
  expect_refused("config.json `\"num_hidden_layers\": 2147483647`", "inspect " + c,
                 {c + ": the architecture (2147483647 layers", "needs at least"});
  const std::string dup = hf_variant(s, "rel_cfg_dup", nullptr);
  std::string t = read_text_file(s.hf + "/config.json");
  t.insert(t.find('{') + 1, "\"hidden_size\": 32,");
  write_file_atomic(dup + "/config.json", t);
  expect_refused("config.json with a duplicate key", "inspect " + dup, {dup + "/config.json: duplicate key \"hidden_size\""});
}

TEST(Reliability, Llama2cHeaderClaimingHugeCounts) {
  const std::string d = test::temp_dir("rel_l2c_huge");
  const int32_t header[7] = {64, 64, 2147483647, 8, 4, 512, 512};
  std::ofstream(d + "/m.bin", std::ios::binary).write(reinterpret_cast<const char*>(header), sizeof header);
  expect_refused("28-byte llama2.c header claiming 2^31-1 layers", "inspect " + d + "/m.bin",
                 {d + "/m.bin: llama2.c header", "n_layers=2147483647", "but the file has 28"});
}

TEST(Reliability, HugeSampleCount) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_samples");
  expect_refused("`--samples 2147483647`",
                 "compress " + s.hf + " --calib-data " + s.data + " --samples 2147483647 --seq-len 16 --out " + d + "/o",
                 {"calibration: 2147483647 windows x 16 tokens need", "GiB"});
  EXPECT_FALSE(fs::exists(d + "/o.partial"));
}

TEST(Reliability, DirectoriesWhereFilesBelong) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_dirs");
  fs::create_directories(d + "/tok");
  expect_refused("`--tokenizer DIR`",
                 "compress " + s.hf + " --calib-data " + s.data + " --samples 4 --seq-len 16 --tokenizer " + d +
                     "/tok --out " + d + "/o",
                 {d + "/tok: is a directory, expected a tokenizer file"});
  expect_refused("`--calib-data DIR`", "compress " + s.hf + " --calib-data " + d + " --samples 4 --seq-len 16 --out " + d + "/o",
                 {d + ": is a directory"});
  EXPECT_FALSE(fs::exists(d + "/o.partial"));
}

TEST(Reliability, PackedCheckpointJsonTypes) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_packed_json");
  ASSERT_EQ(test::run_ptq(rtn_args(s, s.hf, d + "/p")).exit_code, 0);
  json cfg = json::parse(read_text_file(d + "/p/config.json"));
  json bad = cfg;
  bad["quantization_config"]["quant_method"] = 7;
  write_file_atomic(d + "/p/config.json", bad.dump());
  expect_refused("packed config.json with a non-string `quant_method`", "eval " + d + "/p --data " + s.data,
                 {d + "/p/config.json: quantization_config: field 'quant_method' must be a string"});
  bad = cfg;
  bad["quantization_config"]["ptq"]["layers"]["model.layers.0.self_attn.q_proj"]["rows"] = "64";
  write_file_atomic(d + "/p/config.json", bad.dump());
  expect_refused("packed config.json with non-integer `rows`", "eval " + d + "/p --data " + s.data,
                 {"quantization_config.ptq.layers entry of model.layers.0.self_attn.q_proj: field 'rows'"});
  bad = cfg;
  bad["quantization_config"]["group_size"] = 1e300;
  write_file_atomic(d + "/p/config.json", bad.dump());
  expect_refused("packed config.json with `group_size` 1e300", "eval " + d + "/p --data " + s.data,
                 {"field 'group_size' must be an integer"});
}

// ---- 5. Calibration HDF5 files --------------------------------------------------------------

// An HDF5 file with the root attributes of a ptq calibration file (unless `ptq_format` is "")
// and a /tokens dataset of `dims`, chunked and never written.
std::string craft_h5(const std::string& path, const std::string& ptq_format, hsize_t rows, hsize_t cols) {
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t scalar = H5Screate(H5S_SCALAR);
  if (!ptq_format.empty()) {
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, ptq_format.size());
    hid_t a = H5Acreate2(f, "ptq_format", str, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, str, ptq_format.data());
    H5Aclose(a);
    H5Tclose(str);
    const int64_t one = 1;
    a = H5Acreate2(f, "version", H5T_NATIVE_INT64, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &one);
    H5Aclose(a);
  }
  hsize_t dims[2] = {rows, cols}, chunk[2] = {1, 1};
  hid_t space = H5Screate_simple(2, dims, nullptr);
  hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(plist, 2, chunk);
  hid_t ds = H5Dcreate2(f, "tokens", H5T_STD_I32LE, space, H5P_DEFAULT, plist, H5P_DEFAULT);
  H5Dclose(ds);
  H5Pclose(plist);
  H5Sclose(space);
  H5Sclose(scalar);
  H5Fclose(f);
  return path;
}

TEST(Reliability, ActivationFileTokensOverflowAndFormat) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_h5");
  const std::string args = "compress " + s.hf + " --method gptq --out " + d + "/o --calib ";
  const std::string huge = craft_h5(d + "/huge.h5", "ptq-calibration", hsize_t(1) << 33, hsize_t(1) << 33);
  expect_refused("calibration file whose /tokens claims [2^33, 2^33]", args + huge, {huge + ": /tokens: shape [8589934592, 8589934592]"});
  const std::string other = craft_h5(d + "/other.h5", "", 2, 8);
  expect_refused("HDF5 file without the ptq_format attribute", args + other, {other + ": not a ptq calibration file"});
  PTQ_REQUIRE_SHARED("golden/stories260K.h5", golden);
  expect_refused("another program's HDF5 file (golden/stories260K.h5)", args + golden, {"not a ptq calibration file"});
  // A real calibration file cut short, and random bytes.
  ASSERT_EQ(test::run_ptq("calibrate " + s.hf + " --tokenizer " + s.tok_bin + " --data " + s.data +
                          " --data-format tinystories --samples 2 --seq-len 8 --capture all --quiet --out " + d + "/c.h5")
                .exit_code,
            0);
  const std::string whole = slurp(d + "/c.h5");
  write_file_atomic(d + "/cut.h5", whole.substr(0, whole.size() / 2));
  expect_refused("calibration file truncated to half", args + d + "/cut.h5", {d + "/cut.h5: truncated HDF5 file"});
  std::string noise(4096, '\0');
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = char((i * 2654435761u) >> 13);
  write_file_atomic(d + "/noise.h5", noise);
  expect_refused("random bytes as --calib", args + d + "/noise.h5", {d + "/noise.h5: not an HDF5 file"});
  // `ptq calibrate --out` never replaces a file that is not a calibration file.
  std::ofstream(d + "/mine.h5") << "user data";
  expect_refused("`calibrate --out FILE` (FILE is not a calibration file)",
                 "calibrate " + s.hf + " --tokenizer " + s.tok_bin + " --data " + s.data + " --samples 2 --seq-len 8 --out " +
                     d + "/mine.h5",
                 {d + "/mine.h5: exists and is not a readable ptq calibration file"});
  EXPECT_EQ(slurp(d + "/mine.h5"), "user data");
}

// ---- 6. NaN / Inf --------------------------------------------------------------------------

TEST(Reliability, NonFiniteWeightsAreNamedByTensorBeforeWork) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_nan");
  const std::string emb = hf_variant(s, "rel_nan_emb", nullptr, "model.embed_tokens.weight", NAN);
  expect_refused("NaN in the embedding (gptq)",
                 "compress " + emb + " --calib-data " + s.data + " --samples 4 --seq-len 16 --out " + d + "/o",
                 {emb + "/model.safetensors: tensor 'model.embed_tokens.weight' holds NaN at [0, 3]"});
  const std::string norm = hf_variant(s, "rel_inf_norm", nullptr, "model.layers.2.post_attention_layernorm.weight", INFINITY);
  expect_refused("Inf in a norm (rtn)", rtn_args(s, norm, d + "/o"),
                 {"tensor 'model.layers.2.post_attention_layernorm.weight' holds an infinity at [3]"});
  EXPECT_FALSE(fs::exists(d + "/o.partial"));
}

TEST(Reliability, ScaleOverflowingFp16IsRefusedNotWrittenAsInf) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_fp16");
  const std::string big = hf_variant(s, "rel_fp16_src", nullptr, "model.layers.1.mlp.down_proj.weight", 1e38f);
  expect_refused("RTN of weights whose scale overflows fp16", rtn_args(s, big, d + "/o"),
                 {"model.layers.1.mlp.down_proj: scale", "does not fit fp16", "kept in " + d + "/o.partial/"});
  EXPECT_FALSE(fs::exists(d + "/o"));
  EXPECT_TRUE(fs::exists(d + "/o.partial/resume/block_000.safetensors"));  // block 0 finished
  EXPECT_FALSE(fs::exists(d + "/o.partial.lock"));
  // The fake format stores fp32 and takes the same weights.
  auto r = test::run_ptq(rtn_args(s, big, d + "/fake") + " --format fake");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Reliability, OverflowingActivationsAreBlamedOnTheLayerTheyReach) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_act_overflow");
  // A finite norm gain so large that block 1's attention inputs overflow float32.
  const std::string src = test::temp_dir("rel_act_overflow_src");
  json cfg = json::parse(read_text_file(s.hf + "/config.json"));
  write_file_atomic(src + "/config.json", cfg.dump(2));
  SafetensorsFile in(s.hf + "/model.safetensors");
  SafetensorsWriter out;
  for (const auto& [n, info] : in.tensors()) {
    const uint8_t* p = in.data(n);
    std::vector<uint8_t> bytes(p, p + info.nbytes);
    if (n == "model.layers.1.input_layernorm.weight")
      for (size_t i = 0; i < bytes.size() / 4; ++i) {
        const float big = 3e38f;
        std::memcpy(bytes.data() + 4 * i, &big, 4);
      }
    out.add(n, info.dtype, info.shape, std::move(bytes));
  }
  out.write(src + "/model.safetensors");
  fs::copy_file(s.hf + "/tokenizer.model", src + "/tokenizer.model");
  expect_refused("GPTQ whose calibration inputs overflow (finite weights)",
                 "compress " + src + " --calib-data " + s.data + " --samples 4 --seq-len 32 --quiet --out " + d + "/o",
                 {"model.layers.1.self_attn.q_proj: its calibration inputs are not finite"});
}

// ---- 7. YAML duplicates, binary text ----------------------------------------------------------

TEST(Reliability, YamlDuplicateKeys) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_yaml_dup");
  std::ofstream(d + "/job.yaml") << "model: {path: " << s.hf << "}\ncalibration:\n  data: " << s.data
                                 << "\n  samples: 4\n  samples: 8\nrecipe: gptq\noutput: {dir: " << d << "/o}\n";
  expect_refused("YAML job with a duplicate key", "run " + d + "/job.yaml",
                 {d + "/job.yaml:5:3: duplicate key 'samples' in calibration (first at " + d + "/job.yaml:4:3)"});
  std::ofstream(d + "/stage.yaml") << "model: {path: " << s.hf << "}\nrecipe:\n  - rtn: {bits: 4, bits: 3}\noutput: {dir: "
                                   << d << "/o}\n";
  expect_refused("YAML recipe stage with a duplicate argument", "run " + d + "/stage.yaml", {"duplicate key 'bits'"});
}

TEST(Reliability, BinaryCalibrationText) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_binary");
  std::string bytes(20000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char((i * 2654435761u) >> 11);
  write_file_atomic(d + "/random.txt", bytes);
  expect_refused("random binary bytes as calibration text",
                 "compress " + s.hf + " --calib-data " + d + "/random.txt --samples 4 --seq-len 16 --out " + d + "/o",
                 {d + "/random.txt: not UTF-8 text"});
  write_file_atomic(d + "/empty.txt", std::string("  \n\n"));
  expect_refused("empty calibration text",
                 "compress " + s.hf + " --calib-data " + d + "/empty.txt --samples 4 --seq-len 16 --out " + d + "/o",
                 {d + "/empty.txt: holds no text"});
}

// ---- 8. Kill during the final write; what a failure leaves ---------------------------------

TEST(Reliability, StrayTempFileNeverReachesTheCheckpoint) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_stray_tmp");
  const std::string args = rtn_args(s, s.hf, d + "/out");
  EXPECT_EQ(test::run_ptq(args, "PTQ_TEST_STOP_AFTER_BLOCK=4").exit_code, 137);  // every block done
  // What a kill during the final write leaves in the staging area.
  std::ofstream(d + "/out.partial/config.json.tmp.99999") << "{\"half\":";
  std::ofstream(d + "/out.partial/model.safetensors") << "truncated";
  std::ofstream(d + "/out.partial/resume/block_004.safetensors.tmp.99999") << "x";
  std::ofstream(d + "/out.partial/special_tokens_map.json") << "{\"half\":";  // a sidecar copied before the kill
  auto r = test::run_ptq(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const auto& [file, hash] : test::file_hashes(d + "/out"))
    EXPECT_EQ(file.find(".tmp."), std::string::npos) << file;
  const std::string ref = test::temp_dir("rel_stray_tmp_ref");
  ASSERT_EQ(test::run_ptq(rtn_args(s, s.hf, ref + "/out")).exit_code, 0);
  EXPECT_EQ(test::file_hashes(d + "/out"), test::file_hashes(ref + "/out"));
}

TEST(Reliability, FailureBeforeAnyBlockLeavesNothing) {
  REQUIRE_STORIES(s);
  const std::string d = test::temp_dir("rel_fail_early");
  expect_refused("gptq with a seq_len beyond the model's positions",
                 "compress " + s.hf + " --calib-data " + s.data + " --samples 4 --seq-len 100000 --out " + d + "/o",
                 {"calibration seq_len 100000 exceeds"});
  EXPECT_FALSE(fs::exists(d + "/o.partial"));
  EXPECT_FALSE(fs::exists(d + "/o.partial.lock"));
}

// ---- 9. Safetensors held to the format's rules ---------------------------------------------

std::string craft_st(const std::string& path, const std::string& header, size_t data_bytes, uint64_t len_field = 0) {
  std::string bytes(8, '\0');
  const uint64_t n = len_field ? len_field : header.size();
  for (int i = 0; i < 8; ++i) bytes[i] = char(n >> (8 * i));
  bytes += header;
  bytes.append(data_bytes, '\0');
  write_file_atomic(path, bytes);
  return path;
}

TEST(Reliability, SafetensorsFormatRules) {
  REQUIRE_STORIES(s);
  auto in_dir = [&](const std::string& name, const std::string& header, size_t data, uint64_t len = 0) {
    const std::string dir = test::temp_dir(name);
    fs::copy_file(s.hf + "/config.json", dir + "/config.json");
    craft_st(dir + "/model.safetensors", header, data, len);
    return dir;
  };
  const std::string cap = in_dir("rel_st_cap", "{}", 0, 100000001);
  expect_refused("safetensors header length over 100 MB", "inspect " + cap, {"header length 100000001 exceeds the format's limit"});
  const std::string gap = in_dir("rel_st_gap", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8);
  expect_refused("safetensors gap between spans", "inspect " + gap, {"tensor 'a' starts at byte 4 of the data buffer but no tensor precedes it", "no gap"});
  const std::string trail = in_dir("rel_st_trail", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 12);
  expect_refused("safetensors trailing bytes", "inspect " + trail, {"cover 4 of the 12 bytes", "no trailing bytes"});
  const std::string ovf =
      in_dir("rel_st_shape", R"({"a":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", 0);
  expect_refused("safetensors shape [0, 2^32, 2^32]", "inspect " + ovf, {"tensor 'a': shape [0,4294967296,4294967296] overflows"});
  const std::string big = in_dir("rel_st_1e400", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,1e400]}})", 4);
  expect_refused("safetensors data_offsets with 1e400", "inspect " + big, {"malformed JSON: number overflow"});
}

}  // namespace
}  // namespace ptq

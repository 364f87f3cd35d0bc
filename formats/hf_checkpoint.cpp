// Tensors of an HF checkpoint directory, backed by one or more memory-mapped safetensors files.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "formats/safetensors.h"
#include "formats/tensor_sources.h"
#include "ptq/error.h"
#include "ptq/fs.h"
#include "ptq/json_read.h"

namespace fs = std::filesystem;

namespace ptq {

void convert_to_f32(DType dtype, const uint8_t* src, size_t n, float* dst) {
  // memcpy per element: mapped tensor data carries no alignment guarantee.
  for (size_t i = 0; i < n; ++i) {
    switch (dtype) {
      case DType::F32: std::memcpy(dst + i, src + 4 * i, 4); break;
      case DType::F16: { uint16_t h; std::memcpy(&h, src + 2 * i, 2); dst[i] = f16_to_f32(h); break; }
      case DType::BF16: { uint16_t h; std::memcpy(&h, src + 2 * i, 2); dst[i] = bf16_to_f32(h); break; }
      case DType::I32: { int32_t v; std::memcpy(&v, src + 4 * i, 4); dst[i] = float(v); break; }
      case DType::I16: { int16_t v; std::memcpy(&v, src + 2 * i, 2); dst[i] = float(v); break; }
      case DType::I8: dst[i] = float(static_cast<int8_t>(src[i])); break;
      case DType::U8: dst[i] = float(src[i]); break;
      case DType::I64: { int64_t v; std::memcpy(&v, src + 8 * i, 8); dst[i] = float(v); break; }
    }
  }
}

namespace {

// Rows x cols of the f32 view described in TensorSource::load_f32.
std::pair<int64_t, int64_t> matrix_dims(const std::vector<int64_t>& shape) {
  if (shape.empty()) return {1, 1};
  if (shape.size() == 1) return {1, shape[0]};
  int64_t rest = 1;
  for (size_t i = 1; i < shape.size(); ++i) rest *= shape[i];
  return {shape[0], rest};
}

class SafetensorsSource : public TensorSource {
 public:
  explicit SafetensorsSource(std::string where) : where_(std::move(where)) {}

  void add_file(std::unique_ptr<SafetensorsFile> f) {
    for (const auto& [name, info] : f->tensors()) {
      auto [it, inserted] = index_.emplace(name, Slot{info, f.get()});
      if (!inserted)
        throw Error(f->path() + ": tensor '" + name + "' is also stored in " + it->second.file->path());
    }
    files_.push_back(std::move(f));
  }

  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& kv : index_) out.push_back(kv.first);
    return out;
  }
  const TensorInfo* find(const std::string& name) const override {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &it->second.info;
  }
  Mat load_f32(const std::string& name) const override {
    const Slot& s = slot(name);
    auto [rows, cols] = matrix_dims(s.info.shape);
    Mat m(rows, cols);
    convert_to_f32(s.info.dtype, s.file->data(name), static_cast<size_t>(rows * cols), m.data());
    return m;
  }
  std::vector<uint8_t> load_raw(const std::string& name) const override {
    const Slot& s = slot(name);
    const uint8_t* p = s.file->data(name);
    return std::vector<uint8_t>(p, p + s.info.nbytes);
  }

 private:
  struct Slot {
    TensorInfo info;
    const SafetensorsFile* file;
  };
  const Slot& slot(const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end()) throw Error(where_ + ": no tensor named '" + name + "'");
    return it->second;
  }
  std::string where_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Slot> index_;
};

// weight_map name -> shard file name, validated.
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
  const nlohmann::json j = read_json_file(index_path);
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw Error(index_path + ": expected an object with a 'weight_map' object");
  std::map<std::string, std::string> map;
  for (auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string()) throw Error(index_path + ": weight_map '" + name + "': expected a file name string");
    const std::string shard = file.get<std::string>();
    // Shards sit beside the index: a path elsewhere is a damaged (or hostile) index.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
      throw Error(index_path + ": weight_map '" + name + "': shard '" + shard + "' is not a file name in the directory");
    map[name] = shard;
  }
  return map;
}

std::shared_ptr<TensorSource> open_sharded(const std::string& dir, const std::string& index_path,
                                           std::vector<std::string>* weight_files) {
  auto map = read_weight_map(index_path);
  std::set<std::string> shards;
  for (const auto& kv : map) shards.insert(kv.second);
  auto src = std::make_shared<SafetensorsSource>(index_path);
  std::map<std::string, const SafetensorsFile*> opened;
  for (const auto& shard : shards) {
    auto f = std::make_unique<SafetensorsFile>((fs::path(dir) / shard).string());
    opened[shard] = f.get();
    src->add_file(std::move(f));
  }
  for (const auto& [name, shard] : map)
    if (!opened[shard]->tensors().count(name))
      throw Error(index_path + ": tensor '" + name + "' is listed in weight_map under '" + shard +
                  "' but that shard does not contain it");
  weight_files->push_back(index_path);
  for (const auto& shard : shards) weight_files->push_back((fs::path(dir) / shard).string());
  return src;
}

}  // namespace

std::shared_ptr<TensorSource> open_hf_tensors(const std::string& dir,
                                              std::vector<std::string>* weight_files) {
  const std::string index = (fs::path(dir) / "model.safetensors.index.json").string();
  const std::string single = (fs::path(dir) / "model.safetensors").string();
  std::error_code ec;
  if (fs::exists(index, ec)) return open_sharded(dir, index, weight_files);
  if (!fs::exists(single, ec))
    throw Error(dir + ": no model.safetensors or model.safetensors.index.json in the directory");
  auto src = std::make_shared<SafetensorsSource>(single);
  src->add_file(std::make_unique<SafetensorsFile>(single));
  weight_files->push_back(single);
  return src;
}

OpenedSource open_hf_dir(const std::string& dir) {
  OpenedSource out;
  const std::string config = (fs::path(dir) / "config.json").string();
  std::error_code ec;
  if (!fs::exists(config, ec)) throw Error(config + ": cannot open: config.json is required in an HF model directory");
  out.config = ModelConfig::from_file(config);
  out.files.push_back(config);
  std::vector<std::string> weights;
  out.tensors = open_hf_tensors(dir, &weights);
  std::sort(weights.begin(), weights.end());
  out.files.insert(out.files.end(), weights.begin(), weights.end());
  return out;
}

// A directory is an HF checkpoint; any other file falls back to llama2.c (checked by its header).
static const ModelSourceRegistrar kHfSource({"hf", 20, [](const std::string& p) { std::error_code ec; return std::filesystem::is_directory(p, ec); }, open_hf_dir});

}  // namespace ptq

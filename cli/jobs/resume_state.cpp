#include "cli/jobs/resume_state.h"

#include <cstdio>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "formats/safetensors.h"
#include "ptq/error.h"
#include "ptq/fs.h"
#include "ptq/sha256.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ptq {
namespace {

struct NamedLinear {
  const char* name;
  Linear BlockWeights::*member;
};
const NamedLinear kLinears[] = {{"q_proj", &BlockWeights::q},       {"k_proj", &BlockWeights::k},
                                {"v_proj", &BlockWeights::v},       {"o_proj", &BlockWeights::o},
                                {"gate_proj", &BlockWeights::gate}, {"up_proj", &BlockWeights::up},
                                {"down_proj", &BlockWeights::down}};

std::vector<uint8_t> bytes_of(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  return std::vector<uint8_t>(b, b + n);
}

void add_vec(SafetensorsWriter& w, const std::string& name, const Vec& v) {
  w.add(name, DType::F32, {int64_t(v.size())}, bytes_of(v.data(), size_t(v.size()) * sizeof(float)));
}

Mat read_mat(const SafetensorsFile& f, const std::string& name) {
  auto it = f.tensors().find(name);
  if (it == f.tensors().end() || it->second.dtype != DType::F32)
    throw Error(f.path() + ": resume state lacks F32 tensor '" + name + "'");
  const auto& shape = it->second.shape;
  int64_t rows = shape.size() == 2 ? shape[0] : 1, cols = shape.empty() ? 1 : shape.back();
  Mat m(rows, cols);
  std::memcpy(m.data(), f.data(name), size_t(rows * cols) * sizeof(float));
  return m;
}

Vec read_vec(const SafetensorsFile& f, const std::string& name) {
  Mat m = read_mat(f, name);
  return Eigen::Map<const Vec>(m.data(), m.size());
}

json result_to_json(const LayerResult& r, const QuantizedLayer* q) {
  json j = {{"name", r.name},   {"layer", r.layer},         {"rows", r.rows},
            {"cols", r.cols},   {"spec", r.spec},           {"skipped", r.skipped},
            {"rel_error", r.rel_error}, {"seconds", r.seconds}, {"bits_per_weight", r.bits_per_weight},
            {"parts", r.parts}, {"sparse_share", r.sparse_share}, {"log", r.log}};
  if (q) j["descriptor"] = q->descriptor();
  return j;
}

LayerResult result_from_json(const json& j) {
  LayerResult r;
  r.name = j.at("name");
  r.layer = j.at("layer");
  r.rows = j.at("rows");
  r.cols = j.at("cols");
  r.spec = j.at("spec");
  r.skipped = j.at("skipped");
  r.rel_error = j.at("rel_error");
  r.seconds = j.at("seconds");
  r.bits_per_weight = j.at("bits_per_weight");
  r.parts = j.at("parts");
  r.sparse_share = j.value("sparse_share", 0.0);
  r.log = j.at("log").get<std::vector<std::string>>();
  return r;
}

// The layer's parts are stored as q.<layer>.<part> (QuantizedLayer::to_tensors).
QuantizedLayer layer_from(const SafetensorsFile& f, const LayerResult& r, const std::string& descriptor) {
  const std::string prefix = "q." + r.name + ".";
  std::vector<LayerTensor> parts;
  for (const auto& [name, info] : f.tensors()) {
    if (!name.starts_with(prefix)) continue;
    const uint8_t* data = f.data(name);
    parts.push_back({name.substr(prefix.size()), info.dtype, info.shape,
                     std::vector<uint8_t>(data, data + info.nbytes)});
  }
  return QuantizedLayer::from_tensors(f.path() + ": " + r.name, descriptor, parts);
}

}  // namespace

ResumeState::ResumeState(std::string dir, const std::string& fingerprint_inputs, bool fresh)
    : dir_(std::move(dir)) {
  const std::string fp_file = (fs::path(dir_) / "fingerprint.json").string();
  const std::string hash = sha256_hex(fingerprint_inputs);
  bool matches = false;
  if (!fresh && fs::exists(fp_file)) {
    try {
      matches = json::parse(read_text_file(fp_file)).at("sha256") == hash;
    } catch (const std::exception&) {
      matches = false;  // a damaged state is treated as a different one
    }
  }
  std::error_code ec;
  if (!matches) {
    discarded_ = !fresh && fs::exists(dir_);
    fs::remove_all(dir_, ec);
    fs::create_directories(dir_, ec);
    if (ec) throw Error(dir_ + ": cannot create the resume state directory: " + ec.message());
    json fp = {{"sha256", hash}, {"inputs", json::parse(fingerprint_inputs)}};
    write_file_atomic(fp_file, fp.dump(2) + "\n");
  }
  // A kill during save_block leaves its temp file (block_LLL.safetensors.tmp.<pid>): not a block.
  for (const auto& e : fs::directory_iterator(dir_, ec))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) fs::remove(e.path(), ec);
  while (fs::exists(block_file(completed_))) ++completed_;
}

std::string ResumeState::block_file(int layer) const {
  char name[32];
  std::snprintf(name, sizeof name, "block_%03d.safetensors", layer);
  return (fs::path(dir_) / name).string();
}

void ResumeState::save_block(int layer, const BlockRecord& rec, const BlockWeights& fw) const {
  SafetensorsWriter w;
  add_vec(w, "final.attn_norm", fw.attn_norm);
  add_vec(w, "final.ffn_norm", fw.ffn_norm);
  for (const auto& [n, member] : kLinears) {
    const Linear& lin = fw.*member;
    PTQ_ASSERT(!lin.packed, "the pipeline quantizes dense blocks");
    w.add_f32(std::string("final.") + n + ".w", lin.w);
    if (lin.bias.size() > 0) add_vec(w, std::string("final.") + n + ".bias", lin.bias);
  }
  for (const auto& [name, value] : rec.tensors) w.add_f32("t." + name, value);
  json results = json::array();
  for (size_t i = 0; i < rec.results.size(); ++i) {
    const LayerResult& r = rec.results[i];
    const QuantizedLayer* q = rec.weights[i] ? &*rec.weights[i] : nullptr;
    results.push_back(result_to_json(r, q));
    if (!q) continue;
    for (auto& t : q->to_tensors()) w.add("q." + r.name + "." + t.name, t.dtype, t.shape, std::move(t.bytes));
  }
  // The order of tensor sink calls is kept in the metadata (the file stores names sorted).
  json tensor_names = json::array();
  for (const auto& t : rec.tensors) tensor_names.push_back(t.first);
  w.set_metadata("results", results.dump());
  w.set_metadata("tensors", tensor_names.dump());
  w.write(block_file(layer));
}

BlockRecord ResumeState::load_record(int layer) const {
  SafetensorsFile f(block_file(layer));
  BlockRecord rec;
  try {
    for (const auto& name : json::parse(f.metadata().at("tensors")))
      rec.tensors.emplace_back(name.get<std::string>(), read_mat(f, "t." + name.get<std::string>()));
    for (const auto& j : json::parse(f.metadata().at("results"))) {
      rec.results.push_back(result_from_json(j));
      if (j.contains("descriptor"))
        rec.weights.emplace_back(layer_from(f, rec.results.back(), j.at("descriptor")));
      else
        rec.weights.emplace_back(std::nullopt);
    }
  } catch (const json::exception& e) {
    throw Error(f.path() + ": damaged resume state (" + e.what() + "); rerun with --fresh");
  } catch (const std::out_of_range&) {
    throw Error(f.path() + ": damaged resume state (missing metadata); rerun with --fresh");
  }
  return rec;
}

BlockWeights ResumeState::load_final_weights(const Model& model, int layer) const {
  SafetensorsFile f(block_file(layer));
  BlockWeights w = BlockWeights::load(model, layer);
  auto same_size = [&](const std::string& name, Eigen::Index got, Eigen::Index want) {
    if (got != want)
      throw Error(f.path() + ": damaged resume state ('" + name + "' does not fit the model); rerun with --fresh");
  };
  const Vec attn = read_vec(f, "final.attn_norm"), ffn = read_vec(f, "final.ffn_norm");
  same_size("final.attn_norm", attn.size(), w.attn_norm.size());
  same_size("final.ffn_norm", ffn.size(), w.ffn_norm.size());
  w.attn_norm = attn;
  w.ffn_norm = ffn;
  for (const auto& [n, member] : kLinears) {
    Linear& lin = w.*member;
    const std::string name = std::string("final.") + n;
    const Mat m = read_mat(f, name + ".w");
    same_size(name + ".w", m.rows(), lin.w.rows());
    same_size(name + ".w", m.cols(), lin.w.cols());
    lin.w = m;
    if (lin.bias.size() > 0) {
      const Vec b = read_vec(f, name + ".bias");
      same_size(name + ".bias", b.size(), lin.bias.size());
      lin.bias = b;
    }
  }
  return w;
}

}  // namespace ptq

#include "formats/packed_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "formats/fake_quant.h"
#include "formats/safetensors.h"
#include "ptq/error.h"
#include "ptq/fs.h"
#include "ptq/json_read.h"
#include "ptq/pipeline.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace ptq {
namespace {

bool same_grid(const QuantGrid& a, const QuantGrid& b) {
  return a.bits == b.bits && a.group_size == b.group_size && a.sym == b.sym;
}

struct PackedEntry {
  PackedLayer buffers;
  QuantGrid grid;
  int rows = 0, cols = 0;
  bool desc_act = false;
};

size_t packed_bytes(const PackedLayer& layer) {
  size_t n = 0;
  for (const auto& [suffix, b] : layer) n += b.bytes.size();
  return n;
}

// The packed layouts store scales as fp16: a larger one would be written as an infinity and every
// reader would compute NaN from it, so the layer is refused by name instead.
void check_scales_fit_f16(const std::string& layer, const GridCodes& q) {
  for (Eigen::Index r = 0; r < q.scales.rows(); ++r)
    for (Eigen::Index g = 0; g < q.scales.cols(); ++g) {
      const float s = q.scales(r, g);
      if (std::isfinite(f16_to_f32(f32_to_f16(s)))) continue;
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s: scale %g (row %lld, group %lld) does not fit fp16 (largest 65504)",
                    layer.c_str(), double(s), static_cast<long long>(r), static_cast<long long>(g));
      throw Error(std::string(buf) + ": the weights are too large for a packed format; use --format fake");
    }
}

// Packs each layer as the pipeline hands it over, so only packed bytes are held.
class PackedCheckpointWriter final : public CheckpointWriter {
 public:
  PackedCheckpointWriter(const FormatTraits& traits, const PackedLayout& layout)
      : CheckpointWriter(traits), layout_(layout) {}

  void replace_tensor(const std::string& name, const Mat& value) override { replaced_[name] = value; }

 protected:
  // The base class has checked the layer against packed_layer_refusal.
  void store_layer(const LayerResult& r, const QuantizedLayer* layer) override {
    if (!layer) return;  // stays in full precision: its .weight is copied in finish()
    const GridCodes* q = &layer->grid;
    check_scales_fit_f16(r.name, *q);
    for (const auto& why : layout_.engine_refusals(*q)) {
      auto it = std::find_if(refusals_.begin(), refusals_.end(), [&](const auto& e) { return e.first == why; });
      if (it == refusals_.end()) it = refusals_.insert(refusals_.end(), {why, {}});
      it->second.push_back(r.name);
    }
    layers_[r.name] = {layout_.pack(*q), q->grid, q->rows, q->cols, !natural_g_idx(*q)};
  }

 public:
  void finish(const Model& model, const CheckpointMetadata& meta, const OutputDir& out) override {
    SafetensorsWriter writer;
    // Packed layers replace their source .weight.
    add_source_and_replaced_tensors(model, replaced_, [&](const std::string& name) {
      return name.ends_with(".weight") && layers_.count(name.substr(0, name.size() - 7));
    }, writer);
    fp_linears_.clear();
    for (const auto& module : linear_layer_names(model.config()))
      if (!layers_.count(module)) fp_linears_.push_back(module);
    fp_linears_.push_back("lm_head");  // HF builds an lm_head Linear whether or not it is tied
    json shapes = json::object();
    size_t bytes = 0, weights = 0;
    for (const auto& [module, e] : layers_) {
      for (const auto& [suffix, b] : e.buffers) writer.add(module + "." + suffix, b.dtype, b.shape, b.bytes);
      shapes[module] = {e.rows, e.cols};
      bytes += packed_bytes(e.buffers);
      weights += size_t(e.rows) * e.cols;
    }
    for (const auto& [k, v] : meta.to_strings()) writer.set_metadata(k, v);
    writer.set_metadata("ptq.format", layout_.name());
    writer.set_metadata("ptq.shapes", shapes.dump());
    writer.write(out.path_of("model.safetensors"));
    out.write_text("config.json", output_config_json(model, "quantization_config", config(meta).dump(),
                                                     untied_by_transform(model, replaced_)));
    print_engine_refusals();
    const auto file_bytes = fs::file_size(out.path_of("model.safetensors"));
    std::fprintf(stderr,
                 "%s: model.safetensors %llu bytes; %.3f bits per quantized weight (codes, scales, zeros%s "
                 "over %zu weights in %zu layers)\n",
                 layout_.name().c_str(), static_cast<unsigned long long>(file_bytes),
                 weights ? 8.0 * double(bytes) / double(weights) : 0.0,
                 layout_.name().starts_with("gptq") ? ", g_idx" : "", weights, layers_.size());
  }

 private:
  json config(const CheckpointMetadata& meta) const {
    QuantGrid first;
    bool desc_act = false, mixed = false;
    json per_layer = json::object();
    for (const auto& [module, e] : layers_) {
      if (per_layer.empty()) first = e.grid;
      mixed = mixed || !same_grid(first, e.grid);
      desc_act = desc_act || e.desc_act;
      per_layer[module] = {{"rows", e.rows}, {"cols", e.cols}, {"bits", e.grid.bits},
                           {"group_size", e.grid.group_size <= 0 ? -1 : e.grid.group_size},
                           {"sym", e.grid.sym}, {"desc_act", e.desc_act}};
    }
    if (mixed)
      std::fprintf(stderr, "%s: layers use different grids; quantization_config holds the first layer's, "
                           "so loaders outside ptq will misread the others\n", layout_.name().c_str());
    json qc = layout_.quantization_config(first, desc_act);
    layout_.complete_config(qc, fp_linears_);
    qc["ptq"] = {{"format", layout_.name()}, {"recipe", meta.recipe}, {"layers", per_layer}};
    return qc;
  }

  // What serving engines with alignment rules would refuse or run slower: one line per reason,
  // with the number of layers and the first of them.
  void print_engine_refusals() const {
    for (const auto& [why, layers] : refusals_) {
      std::string names = layers[0];
      if (layers.size() > 1) names += ", " + layers[1];
      if (layers.size() > 2) names += ", +" + std::to_string(layers.size() - 2) + " more";
      std::fprintf(stderr, "%s: %zu layer%s: %s (%s)\n", layout_.name().c_str(), layers.size(),
                   layers.size() == 1 ? "" : "s", why.c_str(), names.c_str());
    }
  }

  const PackedLayout& layout_;
  std::vector<std::pair<std::string, std::vector<std::string>>> refusals_;  // in order of first occurrence
  std::map<std::string, PackedEntry> layers_;
  std::map<std::string, Mat> replaced_;
  std::vector<std::string> fp_linears_;
};

json read_config_json(const std::string& path) { return read_json_file(path); }

// quantization_config.ptq.layers, or an empty object when the file has none.
json ptq_layers_of(const json& qc, const std::string& where) {
  auto ptq = qc.find("ptq");
  if (ptq == qc.end()) return json::object();
  if (!ptq->is_object()) throw Error(where + ": quantization_config.ptq must be an object, found " + describe_json(*ptq));
  auto layers = ptq->find("layers");
  if (layers == ptq->end()) return json::object();
  if (!layers->is_object())
    throw Error(where + ": quantization_config.ptq.layers must be an object, found " + describe_json(*layers));
  return *layers;
}

}  // namespace

std::unique_ptr<CheckpointWriter> make_packed_writer(const FormatTraits& traits, const PackedLayout& layout) {
  return std::make_unique<PackedCheckpointWriter>(traits, layout);
}

const PackedLayout* packed_layout_of(const std::string& dir) {
  std::error_code ec;
  const fs::path cfg = fs::path(dir) / "config.json";
  if (!fs::is_directory(dir, ec) || !fs::exists(cfg, ec)) return nullptr;
  const json j = read_config_json(cfg.string());
  if (!j.is_object() || !j.contains("quantization_config")) return nullptr;
  return layout_for_config(j["quantization_config"], cfg.string());
}

std::map<std::string, QuantizedLayer> read_packed_layers(const Model& model) {
  const PackedLayout* layout = packed_layout_of(model.path());
  const std::string cfg_path = (fs::path(model.path()) / "config.json").string();
  if (!layout)
    throw Error(model.path() + ": not a packed checkpoint (config.json has no gptq, awq or compressed-tensors "
                               "quantization_config)");
  const json qc = read_config_json(cfg_path)["quantization_config"];
  const json ptq_layers = ptq_layers_of(qc, cfg_path);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, shape] : model.required_tensors()) shapes[name] = shape;

  std::map<std::string, QuantizedLayer> out;
  const TensorSource& src = model.tensors();
  for (const auto& module : linear_layer_names(model.config())) {
    const std::vector<std::string> suffixes = layout->buffer_suffixes();
    const TensorInfo* marker = src.find(module + "." + suffixes[0]);
    if (!marker) continue;  // a layer kept in full precision
    const auto& shape = shapes.at(module + ".weight");
    const int rows = int(shape[0]), cols = int(shape[1]);
    const std::string where = marker->file + ": " + module;
    QuantGrid grid = layout->module_grid(qc, module, cfg_path);
    if (ptq_layers.contains(module)) {
      const json& e = ptq_layers[module];
      const std::string entry = cfg_path + ": quantization_config.ptq.layers entry of " + module;
      grid = packed::grid_fields(e, grid, entry);
      if (json_int_field(e, "rows", -1, -1, INT32_MAX, entry) != rows ||
          json_int_field(e, "cols", -1, -1, INT32_MAX, entry) != cols)
        throw Error(entry + " is " + describe_json(e) + " but the architecture needs rows " + std::to_string(rows) +
                    ", cols " + std::to_string(cols));
    }
    PackedLayer buffers;
    for (const std::string& suffix : suffixes) {
      const std::string name = module + "." + suffix;
      if (const TensorInfo* info = src.find(name)) buffers[suffix] = {info->dtype, info->shape, src.load_raw(name)};
    }
    GridCodes q = layout->unpack(where, buffers, rows, cols, grid);
    if (!all_finite(q.scales.data(), size_t(q.scales.size())))
      throw Error(where + ".scales: holds a non-finite scale (an fp16 infinity or NaN); the checkpoint is damaged");
    out[module] = QuantizedLayer::from_grid(std::move(q));
  }
  if (out.empty())
    throw Error(model.path() + ": config.json names a packed format but no layer has a " +
                layout->buffer_suffixes()[0]);
  return out;
}

std::map<std::string, QuantizedLayer> read_packed_checkpoint(const std::string& dir) {
  return read_packed_layers(Model::open(dir));
}

}  // namespace ptq

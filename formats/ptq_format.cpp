// The native `ptq` format (output format "ptq"): an HF directory whose quantized linear layers
// keep every part of their QuantizedLayer (ptq/quantized_layer.h), so any recipe — grids with
// fractional zeros or additive offsets, coded statistics, sparse outliers, low-rank branches,
// online input transforms — round-trips exactly and runs on the composed kernels.
//
// Files:
//   config.json        the source config plus "quantization_config": {"quant_method": "ptq",
//                      "format_version": 1, "recipe": R, "layers": {module: descriptor}} where
//                      descriptor is QuantizedLayer::descriptor() as a JSON object (shape, bits,
//                      group size, rule, statistics coding, sparse nnz, rank, transform kind)
//   model.safetensors  every source tensor except the quantized layers' .weight, in its stored
//                      dtype (transform-replaced ones F32), plus per quantized layer, for
//                      W [N, K], G groups, bits b, named <module>.<part>:
//     grid.codes             U8  [ceil(N·K·b/8)]      LSB-first bit stream of codes, row-major
//     grid.scales            F16 [N, G]               absent when coded
//     grid.zeros             U8  [ceil(N·G·b/8)]      integer zero points, bit stream; or
//                            F16 [N, G]               fractional zeros / additive offsets;
//                                                     absent for symmetric grids (zero 2^(b−1))
//     grid.g_idx             I32 [K]                  only when not in natural order
//     grid.scales.codes      U8  [ceil(N·G·c/8)]      coded statistics, c bits; .scale2 and
//     grid.scales.scale2     F16 [ceil(N/rb), ceil(G/gb)]   .zero2 per second-level group
//     grid.zeros.{codes,scale2,zero2}                 the same for coded zero points
//     sparse.row_offsets     I32 [N + 1]
//     sparse.col_ids         I16 [nnz] (K ≤ 32768; I32 otherwise)
//     sparse.values          F16 [nnz]
//     low_rank.l1            F16 [N, r]
//     low_rank.l2            F16 [r, K]
//     input_transform.signs  U8  [ceil(K/8)]          bit stream, 1 = −1 (Hadamard with signs)
//     input_transform.dense  F32 [K, K]               dense transform
//     input_transform.scale  F32 [K]                  per-channel transform
//   The safetensors __metadata__ carries formats/metadata.h's provenance plus ptq.format = "ptq".
// storage_bits() of every layer equals 8 × the bytes of its parts, up to the last byte of each
// bit stream. Statistics are fp16: the format imposes fp16 statistics on the quantizer
// (GridConstraints), so they are exact; a layer whose statistics are not fp16-exact is refused.
#include <cmath>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "formats/checkpoint_writer.h"
#include "formats/fake_quant.h"
#include "formats/format_rows.h"
#include "formats/safetensors.h"
#include "ptq/error.h"
#include "ptq/json_read.h"
#include "ptq/fs.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace ptq {
namespace {

constexpr int kFormatVersion = 1;

bool fp16_exact(const Mat& m) {
  for (Eigen::Index i = 0; i < m.size(); ++i)
    if (f16_to_f32(f32_to_f16(m.data()[i])) != m.data()[i]) return false;
  return true;
}

std::string refusal(const QuantizedLayer& layer) {
  const GridCodes& g = layer.grid;
  if (!g.coded_scales && !fp16_exact(g.scales)) return "its scales are not fp16-exact (the ptq format stores fp16)";
  if (!g.coded_zeros && !g.integer_zeros() && !fp16_exact(g.zeros))
    return "its fractional zero points or offsets are not fp16-exact (the ptq format stores fp16)";
  return "";
}

class PtqWriter final : public CheckpointWriter {
 public:
  using CheckpointWriter::CheckpointWriter;
  void replace_tensor(const std::string& name, const Mat& value) override { replaced_[name] = value; }
  void finish(const Model& model, const CheckpointMetadata& meta, const OutputDir& out) override {
    SafetensorsWriter writer;
    add_source_and_replaced_tensors(model, replaced_, [&](const std::string& name) {
      return name.ends_with(".weight") && layers_.count(name.substr(0, name.size() - 7));
    }, writer);
    json descriptors = json::object();
    for (auto& [module, layer] : layers_) {
      for (auto& t : layer.tensors) writer.add(module + "." + t.name, t.dtype, t.shape, std::move(t.bytes));
      descriptors[module] = json::parse(layer.descriptor);
    }
    for (const auto& [k, v] : meta.to_strings()) writer.set_metadata(k, v);
    writer.set_metadata("ptq.format", "ptq");
    writer.write(out.path_of("model.safetensors"));
    const json qc = {{"quant_method", "ptq"},
                     {"format_version", kFormatVersion},
                     {"recipe", meta.recipe},
                     {"layers", descriptors}};
    out.write_text("config.json",
                   output_config_json(model, "quantization_config", qc.dump(), untied_by_transform(model, replaced_)));
  }

 protected:
  void store_layer(const LayerResult& r, const QuantizedLayer* q) override {
    if (q) layers_[r.name] = {q->to_tensors(), q->descriptor()};
  }

 private:
  struct Stored {
    std::vector<LayerTensor> tensors;
    std::string descriptor;
  };
  std::map<std::string, Stored> layers_;
  std::map<std::string, Mat> replaced_;
};

json read_config(const std::string& path) { return read_json_file(path); }

std::map<std::string, QuantizedLayer> read_ptq_layers(const Model& model) {
  const std::string cfg_path = (fs::path(model.path()) / "config.json").string();
  const json cfg = read_config(cfg_path);
  if (!cfg.is_object() || !cfg.contains("quantization_config"))
    throw Error(cfg_path + ": no quantization_config");
  const json& qc = cfg["quantization_config"];
  if (!qc.is_object() || json_string_field(qc, "quant_method", "", cfg_path + ": quantization_config") != "ptq")
    throw Error(cfg_path + ": quantization_config does not name the ptq format");
  if (!qc.contains("format_version") || !qc["format_version"].is_number_integer() ||
      qc["format_version"].get<int64_t>() != kFormatVersion)
    throw Error(cfg_path + ": quantization_config.format_version must be " + std::to_string(kFormatVersion));
  if (!qc.contains("layers") || !qc["layers"].is_object())
    throw Error(cfg_path + ": quantization_config.layers must be an object of layer descriptors");
  const std::vector<std::string> modules = linear_layer_names(model.config());
  const std::set<std::string> known(modules.begin(), modules.end());
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, shape] : model.required_tensors()) shapes[name] = shape;

  const TensorSource& src = model.tensors();
  std::map<std::string, QuantizedLayer> out;
  for (const auto& [module, desc] : qc["layers"].items()) {
    if (!known.count(module))
      throw Error(cfg_path + ": quantization_config.layers names '" + module + "', not a linear layer of " +
                  model.config().architecture);
    std::vector<LayerTensor> parts;
    const std::string prefix = module + ".";
    std::string file;
    for (const auto& name : src.names()) {
      if (!name.starts_with(prefix) || name == prefix + "weight" || name == prefix + "bias") continue;
      const TensorInfo* info = src.find(name);
      file = info->file;
      parts.push_back({name.substr(prefix.size()), info->dtype, info->shape, src.load_raw(name)});
    }
    const std::string where = (file.empty() ? model.path() : file) + ": " + module;
    QuantizedLayer layer = QuantizedLayer::from_tensors(where, desc.dump(), parts);
    const auto& shape = shapes.at(module + ".weight");
    if (layer.rows() != shape[0] || layer.cols() != shape[1])
      throw Error(where + ": the layer is [" + std::to_string(layer.rows()) + ", " + std::to_string(layer.cols()) +
                  "] but the architecture needs [" + std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + "]");
    if (src.find(module + ".weight"))
      throw Error(where + ": holds both a quantized layer and a dense .weight");
    out.emplace(module, std::move(layer));
  }
  if (out.empty()) throw Error(cfg_path + ": the ptq format's quantization_config.layers is empty");
  return out;
}

}  // namespace

FormatTraits format_rows::ptq_native() {
  GridConstraints c;
  c.fp16_statistics = true;
  return {FormatId::kPtq,
          "ptq",
          "native: every part of every quantized layer (grids, coded statistics, sparse, low-rank, "
          "input transforms), run by ptq's composed kernels",
          c,
          [](int, int, const QuantGrid&) { return std::string(); },
          refusal,
          [](const Spec&) -> std::unique_ptr<CheckpointWriter> {
            return std::make_unique<PtqWriter>(format_traits("ptq"));
          },
          [](const json& qc) { return qc.is_object() && qc.value("quant_method", std::string()) == "ptq"; },
          read_ptq_layers,
          nullptr,
          true};
}

}  // namespace ptq

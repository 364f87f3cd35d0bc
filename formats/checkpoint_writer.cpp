#include "formats/checkpoint_writer.h"

#include <cctype>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "formats/format_rows.h"
#include "formats/packed_layout.h"
#include "formats/safetensors.h"
#include "ptq/error.h"
#include "ptq/json_read.h"
#include "ptq/fs.h"

namespace fs = std::filesystem;

namespace ptq {

const std::vector<FormatTraits>& format_table() {
  static const std::vector<FormatTraits> table = [] {
    std::vector<FormatTraits> t = {format_rows::fake(), format_rows::ptq_native(), format_rows::gptq(),
                                   format_rows::gptq_v2(), format_rows::awq(), format_rows::compressed_tensors()};
    for (FormatTraits& g : format_rows::gguf()) t.push_back(g);
    return t;
  }();
  return table;
}

std::vector<std::string> format_names() {
  std::vector<std::string> names;
  for (const auto& f : format_table()) names.push_back(f.name);
  return names;
}

namespace {

std::string lowercase(std::string s) {
  for (char& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

}  // namespace

const FormatTraits& format_traits(const std::string& text) {
  for (const auto& f : format_table())
    if (text == f.name) return f;  // names a spec cannot spell, e.g. compressed-tensors
  const Spec spec = parse_spec(text);
  for (const auto& f : format_table())  // gguf(Q4_0), gguf( q4_0 ): the row of its canonical spelling
    if (spec.to_string() == f.name || lowercase(spec.to_string()) == f.name) return f;
  for (const auto& f : format_table()) {
    if (spec.name != f.name) continue;
    if (!spec.args.empty())
      throw Error("output format '" + text + "': the " + f.name + " format takes no arguments");
    return f;
  }
  std::string known;
  for (const auto& n : format_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown output format '" + text + "' (known: " + known + ")");
}

const FormatTraits* detect_format(const std::string& dir) {
  std::error_code ec;
  const fs::path cfg = fs::path(dir) / "config.json";
  if (!fs::is_directory(dir, ec) || !fs::exists(cfg, ec)) return nullptr;
  const nlohmann::json j = read_json_file(cfg.string());
  if (!j.is_object() || !j.contains("quantization_config")) return nullptr;
  const nlohmann::json& qc = j["quantization_config"];
  // The detectors compare quant_method as a string: any other type is an error here, by name.
  if (qc.is_object()) json_string_field(qc, "quant_method", "", cfg.string() + ": quantization_config");
  for (const auto& f : format_table())
    if (f.detect && f.detect(qc)) return &f;
  layout_for_config(qc, cfg.string());  // throws for a variant of a packed method ptq does not read
  return nullptr;
}

void CheckpointWriter::add_layer(const LayerResult& result, const QuantizedLayer* q) {
  if (q) {
    const std::string why = traits_.layer_refusal(*q);
    if (!why.empty())
      throw Error(result.name + ": the " + traits_.name + " format cannot store this layer (" + q->part_names() +
                  "): " + why);
  }
  store_layer(result, q);
}

std::unique_ptr<CheckpointWriter> make_checkpoint_writer(const std::string& spec) {
  const FormatTraits& f = format_traits(spec);
  Spec plain;
  plain.name = f.name;
  return f.make_writer(spec == f.name ? plain : parse_spec(spec));
}

void add_source_and_replaced_tensors(const Model& model, const std::map<std::string, Mat>& replaced,
                                     const std::function<bool(const std::string&)>& skip, SafetensorsWriter& w) {
  const TensorSource& src = model.tensors();
  for (const auto& name : src.names()) {
    if (skip && skip(name)) continue;
    const TensorInfo* info = src.find(name);
    auto it = replaced.find(name);
    if (it != replaced.end())
      w.add_f32(name, it->second, info->shape);
    else
      w.add(name, info->dtype, info->shape, src.load_raw(name));
  }
  for (const auto& [name, value] : replaced) {
    if (src.find(name) || (skip && skip(name))) continue;
    const std::vector<int64_t> shape = value.cols() == 1 ? std::vector<int64_t>{value.rows()}
                                                         : std::vector<int64_t>{value.rows(), value.cols()};
    w.add_f32(name, value, shape);
  }
}

}  // namespace ptq

#include "formats/fake_quant.h"

#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "formats/checkpoint_writer.h"
#include "formats/metadata.h"
#include "formats/safetensors.h"
#include "ptq/error.h"
#include "ptq/fs.h"
#include "ptq/json_read.h"

namespace fs = std::filesystem;

namespace ptq {

std::string output_config_json(const Model& model, const std::string& extra_key,
                               const std::string& extra_json) {
  nlohmann::json cfg;
  fs::path src = fs::path(model.path()) / "config.json";
  if (fs::is_directory(model.path()) && fs::exists(src))
    cfg = read_json_file(src.string());
  else
    cfg = model.config().to_json();
  if (!extra_key.empty()) cfg[extra_key] = nlohmann::json::parse(extra_json);
  return cfg.dump(2) + "\n";
}

namespace {

// `replaced` holds dequantized linear weights (by module name + ".weight") and transformed
// full-precision tensors; everything else is copied from the source in its stored dtype.
void write_fake_quant(const Model& model, const std::map<std::string, Mat>& replaced,
                      const CheckpointMetadata& meta, const OutputDir& out) {
  SafetensorsWriter writer;
  const TensorSource& src = model.tensors();
  for (const auto& name : src.names()) {
    const TensorInfo* info = src.find(name);
    auto it = replaced.find(name);
    if (it != replaced.end())
      writer.add_f32(name, it->second, info->shape);
    else
      writer.add(name, info->dtype, info->shape, src.load_raw(name));
  }
  for (const auto& [k, v] : meta.to_strings()) writer.set_metadata(k, v);
  writer.write(out.path_of("model.safetensors"));
  out.write_text("config.json", output_config_json(model, "", ""));
}

class FakeQuantWriter final : public CheckpointWriter {
 public:
  void add_layer(const LayerResult& r, const GridCodes* q) override {
    if (q) replaced_[r.name + ".weight"] = q->dequantize();
  }
  void replace_tensor(const std::string& name, const Mat& value) override { replaced_[name] = value; }
  void finish(const Model& model, const CheckpointMetadata& meta, const OutputDir& out) override {
    write_fake_quant(model, replaced_, meta, out);
  }

 private:
  std::map<std::string, Mat> replaced_;
};

const CheckpointFormatRegistrar kRegister("fake", [] { return std::make_unique<FakeQuantWriter>(); });

}  // namespace

}  // namespace ptq

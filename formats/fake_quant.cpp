#include "formats/fake_quant.h"

#include "ptq/activation_quant.h"
#include "ptq/error.h"

#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "formats/checkpoint_writer.h"
#include "formats/format_rows.h"
#include "formats/metadata.h"
#include "formats/safetensors.h"
#include "ptq/error.h"
#include "ptq/fs.h"
#include "ptq/json_read.h"

namespace fs = std::filesystem;

namespace ptq {

bool untied_by_transform(const Model& model, const std::map<std::string, Mat>& replaced) {
  return model.config().tie_word_embeddings && replaced.count("lm_head.weight");
}

std::string output_config_json(const Model& model, const std::string& extra_key,
                               const std::string& extra_json, bool untied) {
  nlohmann::json cfg;
  fs::path src = fs::path(model.path()) / "config.json";
  if (fs::is_directory(model.path()) && fs::exists(src))
    cfg = read_json_file(src.string());
  else
    cfg = model.config().to_json();
  if (!extra_key.empty()) cfg[extra_key] = nlohmann::json::parse(extra_json);
  if (untied) cfg["tie_word_embeddings"] = false;
  return cfg.dump(2) + "\n";
}

namespace {

// Every part of a QuantizedLayer folds into its effective weight.
class FakeQuantWriter final : public CheckpointWriter {
 public:
  using CheckpointWriter::CheckpointWriter;
  void replace_tensor(const std::string& name, const Mat& value) override { replaced_[name] = value; }
  void finish(const Model& model, const CheckpointMetadata& meta, const OutputDir& out) override {
    const bool act = recipe_activation_quant(parse_recipe(meta.recipe)).enabled();
    if (act && !online_transform_.empty())
      throw Error(online_transform_ + ": the fake format folds its online input transform into the weight, so the "
                  "activations its act(...) stage quantizes would not be the transformed ones: use --format ptq");
    if (act && !low_rank_.empty())
      throw Error(low_rank_ + ": the fake format folds its low-rank branch into the weight, so act(...) would quantize "
                  "the branch's input too (ptq runs the branch on unquantized activations): use --format ptq");
    SafetensorsWriter writer;
    add_source_and_replaced_tensors(model, replaced_, {}, writer);
    for (const auto& [k, v] : meta.to_strings()) writer.set_metadata(k, v);
    writer.write(out.path_of("model.safetensors"));
    out.write_text("config.json", output_config_json(model, "", "", untied_by_transform(model, replaced_)));
  }

 protected:
  void store_layer(const LayerResult& r, const QuantizedLayer* q) override {
    if (q) replaced_[r.name + ".weight"] = q->effective_weight();
    if (q && q->input_transform && online_transform_.empty()) online_transform_ = r.name;
    if (q && q->low_rank && low_rank_.empty()) low_rank_ = r.name;
  }

 private:
  std::string online_transform_;  // the first layer with an input transform, or ""
  std::string low_rank_;          // the first layer with a low-rank branch, or ""
  // Effective weights of quantized layers (module name + ".weight") and transformed tensors.
  std::map<std::string, Mat> replaced_;
};

std::string no_refusal(int, int, const QuantGrid&) { return ""; }
std::string carries_everything(const QuantizedLayer&) { return ""; }

}  // namespace

FormatTraits format_rows::fake() {
  return {FormatId::kFake,
          "fake",
          "fp32 HF checkpoint of the effective (dequantized) weights; every part folds in",
          {},
          no_refusal,
          carries_everything,
          [](const Spec&) -> std::unique_ptr<CheckpointWriter> {
            return std::make_unique<FakeQuantWriter>(format_traits("fake"));
          },
          nullptr,
          nullptr,
          nullptr,
          true};
}

}  // namespace ptq

#include "formats/loaded_model.h"

#include <filesystem>
#include <map>

#include "formats/checkpoint_writer.h"
#include "formats/ggml_blocks.h"
#include "formats/gguf_file.h"
#include "formats/safetensors.h"
#include "formats/kernels/packed_matmul.h"
#include "ptq/error.h"

namespace ptq {
namespace {

// Dense grids run on the packed tiles; layers with more parts on the composed kernel.
std::shared_ptr<const PackedLinear> kernel_for(const QuantizedLayer& q) {
  const bool dense_grid = !q.sparse && !q.low_rank && !q.input_transform;
  return dense_grid ? make_packed_linear(q.grid) : make_composed_linear(q);
}

void quantize_block_inputs(LlamaModel& forward, const RuntimeQuant& a) {
  for (BlockWeights& b : forward.blocks()) {
    b.kv = a.kv;
    for (Linear* l : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down}) l->act = a.act;
  }
}

// ggml's vec_dot_type of each weight type, as the rounding it applies to the other operand.
InputRounding llama_cpp_rounding(const Model& model, const std::string& tensor) {
  const TensorInfo* info = model.tensors().find(tensor);
  PTQ_ASSERT(info != nullptr, "the forward's tensors exist");
  if (info->ggml_type < 0)
    throw Error(model.path() + ": --llama-cpp-activations emulates llama.cpp on GGUF files; '" + tensor +
                "' is not stored in one");
  switch (GgmlType(info->ggml_type)) {
    case GgmlType::F32: return InputRounding::kNone;
    case GgmlType::F16: return InputRounding::kF16;
    case GgmlType::BF16: return InputRounding::kBF16;
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q8_0:
      return InputRounding::kBlocks8;
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
      return InputRounding::kBlocks8K;
    default:
      throw Error(model.path() + ": tensor '" + tensor + "' is " + ggml_type_name(GgmlType(info->ggml_type)) +
                  ", whose activation rounding in llama.cpp ptq does not emulate (it does F32, F16, BF16, "
                  "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K)");
  }
}

void round_as_llama_cpp(const Model& model, LlamaModel& forward) {
  const ModelConfig& c = model.config();
  for (int l = 0; l < c.num_layers; ++l)
    for (int g = 0; g < kNumLinearInputs; ++g)
      for (const std::string& name : linear_short_names(LinearInput(g)))
        forward.blocks()[size_t(l)].linear(name)->input_rounding =
            llama_cpp_rounding(model, layer_prefix(l) + name + ".weight");
  forward.head().lm_head_rounding =
      llama_cpp_rounding(model, c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
}

}  // namespace

std::string checkpoint_recipe(const std::string& path) {
  namespace fs = std::filesystem;
  if (fs::is_directory(path)) {
    const fs::path st = fs::path(path) / "model.safetensors";
    if (!fs::exists(st)) return "";
    const SafetensorsFile file(st.string());
    auto it = file.metadata().find("ptq.recipe");
    return it == file.metadata().end() ? "" : it->second;
  }
  if (path.ends_with(".gguf")) return GgufFile(path).optional_string("ptq.recipe").value_or("");
  return "";
}

LoadedModel load_model_for_inference(const std::string& path, bool llama_cpp_activations,
                                     const std::optional<RuntimeQuant>& activations) {
  Model model = Model::open(path);
  const FormatTraits* format = detect_format(path);
  RuntimeQuant act;
  if (activations) {
    act = *activations;
  } else if (const std::string recipe = checkpoint_recipe(path); !recipe.empty()) {
    try {
      act = recipe_runtime_quant(parse_recipe(recipe));
    } catch (const Error& e) {
      throw Error(path + ": the recipe in its metadata: " + e.what());
    }
  }
  if (act.kv.hadamard && hadamard_factors(model.config().head_dim).empty())
    throw Error(path + ": kv(...,hadamard) needs a Hadamard matrix of head_dim " +
                std::to_string(model.config().head_dim) + ", which ptq cannot build");
  if (llama_cpp_activations) {
    auto forward = std::make_shared<LlamaModel>(model);
    round_as_llama_cpp(model, *forward);
    quantize_block_inputs(*forward, act);
    return LoadedModel{std::move(model), std::move(forward), act};
  }
  if (!format || !format->read_layers) {
    auto forward = std::make_shared<LlamaModel>(model);
    quantize_block_inputs(*forward, act);
    return LoadedModel{std::move(model), std::move(forward), act};
  }
  const std::map<std::string, QuantizedLayer> layers = format->read_layers(model);
  std::vector<BlockWeights> blocks;
  // Layers the recipe kept in full precision (and norms, biases) load as usual.
  auto packed_for = [&](const std::string& module) -> std::shared_ptr<const PackedLinear> {
    auto it = layers.find(module);
    return it == layers.end() ? nullptr : kernel_for(it->second);
  };
  for (int l = 0; l < model.config().num_layers; ++l) blocks.push_back(BlockWeights::load(model, l, packed_for));
  auto forward = std::make_shared<LlamaModel>(model.config(), HeadWeights::load(model), std::move(blocks));
  quantize_block_inputs(*forward, act);
  return LoadedModel{std::move(model), std::move(forward), act};
}

}  // namespace ptq

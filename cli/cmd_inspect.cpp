// `ptq inspect MODEL`: what a checkpoint contains, so users can check it before quantizing.
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/command.h"
#include "formats/gguf_file.h"
#include "ptq/error.h"
#include "ptq/model.h"

namespace {

struct InspectOptions {
  std::string model;
  std::string tokenizer;
  bool json = false;
};


std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

// A metadata value on one line: arrays by their size, long strings cut.
std::string value_text(const ptq::GgufValue& v) {
  using ptq::GgufType;
  if (v.type == GgufType::ARRAY) return "[" + std::to_string(v.count) + " x " + ptq::gguf_type_name(v.elem_type) + "]";
  if (v.type == GgufType::STRING) {
    std::string s(v.str.substr(0, 60));
    for (char& c : s)
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    return "\"" + s + (v.str.size() > 60 ? "...\"" : "\"");
  }
  if (v.type == GgufType::BOOL) return v.i ? "true" : "false";
  if (v.is_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v.f);
    return buf;
  }
  return std::to_string(v.i);
}

// Tensor count and bytes per ggml type, in type-id order.
std::map<uint32_t, std::pair<int, uint64_t>> type_histogram(const ptq::GgufFile& g) {
  std::map<uint32_t, std::pair<int, uint64_t>> h;
  for (const auto& t : g.tensors()) {
    auto& e = h[uint32_t(t.type)];
    ++e.first;
    e.second += t.nbytes;
  }
  return h;
}

nlohmann::json gguf_json(const ptq::GgufFile& g) {
  nlohmann::json kv = nlohmann::json::object();
  for (const auto& [key, v] : g.metadata()) kv[key] = {{"type", v.type_string()}, {"value", value_text(v)}};
  nlohmann::json types = nlohmann::json::object();
  for (const auto& [id, e] : type_histogram(g))
    types[ptq::ggml_type_name(ptq::GgmlType(id))] = {{"tensors", e.first}, {"bytes", e.second}};
  return {{"version", g.version()}, {"alignment", g.alignment()}, {"file_bytes", g.file_size()},
          {"data_offset", g.data_offset()}, {"tensor_count", g.tensors().size()}, {"metadata", kv},
          {"tensor_types", types}};
}

void print_gguf(const ptq::GgufFile& g) {
  std::printf("GGUF version %u, %zu tensors, %zu metadata keys, alignment %llu, data at byte %llu of %llu\n",
              g.version(), g.tensors().size(), g.metadata().size(), (unsigned long long)g.alignment(),
              (unsigned long long)g.data_offset(), (unsigned long long)g.file_size());
  for (const auto& [key, v] : g.metadata())
    std::printf("  %-44s %-14s %s\n", key.c_str(), v.type_string().c_str(), value_text(v).c_str());
  std::printf("tensor types (as stored; ptq dequantizes to F32):\n");
  for (const auto& [id, e] : type_histogram(g))
    std::printf("  %-8s %4d tensors %12llu bytes\n", ptq::ggml_type_name(ptq::GgmlType(id)), e.first,
                (unsigned long long)e.second);
  std::printf("\nmapped to:\n");
}

int64_t total_bytes(const ptq::Model& m) {
  int64_t n = 0;
  for (const auto& name : m.tensors().names()) n += int64_t(m.tensors().find(name)->nbytes);
  return n;
}

nlohmann::json to_json(const ptq::Model& m, const InspectOptions& opt) {
  const ptq::ModelConfig& c = m.config();
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& name : m.tensors().names()) {
    const ptq::TensorInfo* t = m.tensors().find(name);
    tensors.push_back({{"name", name}, {"dtype", ptq::dtype_name(t->dtype)}, {"shape", t->shape},
                       {"bytes", t->nbytes}});
  }
  nlohmann::json j = {{"architecture", c.architecture}, {"model_type", c.model_type},
                      {"hidden_size", c.hidden_size}, {"num_layers", c.num_layers},
                      {"num_heads", c.num_heads}, {"num_kv_heads", c.num_kv_heads},
                      {"head_dim", c.head_dim}, {"intermediate_size", c.intermediate_size},
                      {"vocab_size", c.vocab_size}, {"tie_word_embeddings", c.tie_word_embeddings},
                      {"parameter_count", m.parameter_count()}, {"total_bytes", total_bytes(m)},
                      {"tensors", std::move(tensors)}};
  if (!opt.tokenizer.empty()) j["tokenizer"] = opt.tokenizer;
  return j;
}

void print_human(const ptq::Model& m, const InspectOptions& opt) {
  const ptq::ModelConfig& c = m.config();
  std::printf("model:              %s\n", m.path().c_str());
  std::printf("architecture:       %s (%s)\n", c.architecture.c_str(), c.model_type.c_str());
  std::printf("hidden_size:        %d\nintermediate_size:  %d\nlayers:             %d\n", c.hidden_size,
              c.intermediate_size, c.num_layers);
  std::printf("heads:              %d (kv %d, head_dim %d)\n", c.num_heads, c.num_kv_heads, c.head_dim);
  std::printf("vocab_size:         %d (tied embeddings: %s)\n", c.vocab_size,
              c.tie_word_embeddings ? "yes" : "no");
  std::printf("max_positions:      %d\nrope_theta:         %g\nrms_norm_eps:       %g\n",
              c.max_position_embeddings, c.rope_theta, c.rms_norm_eps);
  if (!opt.tokenizer.empty()) std::printf("tokenizer:          %s\n", opt.tokenizer.c_str());
  std::printf("parameters:         %lld\n\n", static_cast<long long>(m.parameter_count()));
  std::printf("%-52s %-5s %-14s %12s\n", "tensor", "dtype", "shape", "bytes");
  for (const auto& name : m.tensors().names()) {
    const ptq::TensorInfo* t = m.tensors().find(name);
    std::printf("%-52s %-5s %-14s %12zu\n", name.c_str(), ptq::dtype_name(t->dtype),
                shape_str(t->shape).c_str(), t->nbytes);
  }
  std::printf("total bytes: %lld\n", static_cast<long long>(total_bytes(m)));
}

int run_inspect(const InspectOptions& opt) {
  std::error_code ec;
  if (!opt.tokenizer.empty() && !std::filesystem::is_regular_file(opt.tokenizer, ec))
    throw ptq::Error(opt.tokenizer + ": cannot open tokenizer: no such file");
  // Open fully before printing anything, so a failure leaves stdout empty.
  const ptq::Model m = ptq::Model::open(opt.model);
  std::unique_ptr<ptq::GgufFile> gguf;
  if (ptq::is_gguf_file(opt.model)) gguf = std::make_unique<ptq::GgufFile>(opt.model);
  if (opt.json) {
    nlohmann::json j = to_json(m, opt);
    if (gguf) j["gguf"] = gguf_json(*gguf);
    std::printf("%s\n", j.dump().c_str());
  } else {
    if (gguf) print_gguf(*gguf);
    print_human(m, opt);
  }
  return 0;
}

ptq::cli::CommandRegistrar reg("inspect", "Show a checkpoint's architecture and tensors",
                               [](CLI::App* sub) {
  auto opt = std::make_shared<InspectOptions>();
  sub->add_option("model", opt->model, "HF model directory, llama2.c .bin or GGUF file")->required();
  sub->add_flag("--json", opt->json, "Print one JSON object instead of a table");
  sub->add_option("--tokenizer", opt->tokenizer, "Tokenizer file (for llama2.c checkpoints)");
  return [opt]() { return run_inspect(*opt); };
});

}  // namespace

#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calibration/text_data.h"
#include "cli/common.h"
#include "ptq/error.h"
#include "ptq/eval.h"
#include "ptq/forward.h"
#include "ptq/fs.h"
#include "ptq/parallel.h"
#include "ptq/progress.h"
#include "formats/loaded_model.h"

namespace ptq::cli {
namespace {

struct EvalOptions {
  std::string model, data, format = "text", tokens_out, logits_out, activations;
  int seq_len = 0, max_samples = 0, threads = 0;
  bool json = false, quiet = false, llama_perplexity = false, llama_cpp_activations = false;
  TextInputOptions text;
};

// float32 .npy (format 1.0) of [rows, cols] row-major: numpy.load reads it.
void write_npy(const std::string& path, const Mat& m) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(m.rows()) + ", " +
                       std::to_string(m.cols()) + "), }";
  header.append(64 - (10 + header.size() + 1) % 64, ' ');
  header += '\n';
  std::vector<uint8_t> bytes = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, uint8_t(header.size() & 0xFF),
                                uint8_t(header.size() >> 8)};
  bytes.insert(bytes.end(), header.begin(), header.end());
  std::vector<float> row(size_t(m.cols()));
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    for (Eigen::Index c = 0; c < m.cols(); ++c) row[size_t(c)] = m(r, c);
    const auto* p = reinterpret_cast<const uint8_t*>(row.data());
    bytes.insert(bytes.end(), p, p + sizeof(float) * row.size());
  }
  write_file_atomic(path, std::span<const uint8_t>(bytes));
}

int run_eval(const EvalOptions& o) {
  set_num_threads(o.threads);
  std::optional<RuntimeQuant> act;
  if (!o.activations.empty()) act = parse_runtime_quant(o.activations);
  LoadedModel lm = load_model_for_inference(o.model, o.llama_cpp_activations, act);
  if (lm.activations.enabled() && !o.quiet && !o.json)
    std::fprintf(stderr, "eval: fake-quantized activations / KV cache: %s\n", lm.activations.spec().c_str());
  DataFormat fmt = parse_data_format(o.format);
  std::unique_ptr<Tokenizer> tok;
  // llama-perplexity's protocol needs to know whether the tokenizer adds BOS, pre-tokenized or not.
  if (o.text.tokens_file.empty() || o.llama_perplexity) tok = open_tokenizer(lm.model, o.text.tokenizer);
  const std::string& path = o.text.tokens_file.empty() ? o.data : o.text.tokens_file;
  TokenSeqs docs = tokenize_documents(path, fmt, o.text.tokens_file.empty() ? tok.get() : nullptr,
                                      !o.text.tokens_file.empty());
  int seq_len = o.seq_len > 0 ? o.seq_len : lm.model.config().max_position_embeddings;
  if (o.llama_perplexity && fmt != DataFormat::kText)
    throw ptq::Error("--llama-perplexity scores consecutive windows of one token stream: use --data-format text");
  TokenSeqs seqs = eval_sequences(docs, fmt, seq_len, o.max_samples);
  if (seqs.empty()) throw ptq::Error(path + ": no sequence of at least 2 tokens to evaluate");
  int first_scored = 1;
  if (o.llama_perplexity) {
    // As llama.cpp's tools/perplexity: every window starts with BOS when the model adds one, and
    // only the predictions of its second half count.
    if (tok->adds_bos() && tok->bos_id() >= 0)
      for (auto& s : seqs) s[0] = tok->bos_id();
    first_scored = seq_len / 2 + 1;
  }
  Progress bar("eval", seqs.size(), o.quiet || o.json);
  EvalResult r = evaluate_perplexity(
      [&](const std::vector<int32_t>& ids) { return lm.forward->logits(ids); }, seqs,
      [&](size_t d, size_t) { bar.update(d); }, first_scored);
  bar.finish();
  if (!o.tokens_out.empty()) write_token_windows(o.tokens_out, seqs);
  if (!o.logits_out.empty()) write_npy(o.logits_out, lm.forward->logits(seqs[0]));
  if (o.json) {
    nlohmann::json j = {{"model", o.model},       {"data", path},
                        {"format", o.format},     {"seq_len", seq_len},
                        {"add_bos", tok ? nlohmann::json(tok->adds_bos()) : nlohmann::json()},
                        {"sequences", r.sequences}, {"tokens", r.tokens},
                        {"mean_nll", r.mean_nll}, {"ppl", r.ppl},
                        {"seconds", r.seconds},   {"tokens_per_second", r.tokens_per_second},
                        {"threads", num_threads()},
                        {"llama_perplexity", o.llama_perplexity},
                        {"llama_cpp_activations", o.llama_cpp_activations},
                        {"activations", lm.activations.spec()}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("model      %s\ndata       %s (%s, seq_len %d, %s)\nsequences  %lld\n", o.model.c_str(),
                path.c_str(), o.format.c_str(), seq_len,
                !tok ? "pre-tokenized" : tok->adds_bos() ? "BOS first" : "no BOS", (long long)r.sequences);
    std::printf("tokens     %lld\nmean_nll   %.6f\nppl        %.4f\ntokens/s   %.0f\n",
                (long long)r.tokens, r.mean_nll, r.ppl, r.tokens_per_second);
  }
  return 0;
}

CommandRegistrar reg("eval", "Perplexity of a model (fp or quantized) on a text file",
                     [](CLI::App* sub) {
  auto o = std::make_shared<EvalOptions>();
  sub->add_option("model", o->model, "HF directory, llama2.c .bin, GGUF file, or ptq output directory")
      ->required();
  sub->add_option("--data", o->data, "Text file to evaluate on");
  sub->add_option("--data-format", o->format,
                  "Protocol: tinystories (per story with BOS), wikitext2 or text (one stream, "
                  "non-overlapping windows)")
      ->default_val("text")
      ->check(CLI::IsMember({"tinystories", "wikitext2", "text"}));
  sub->add_option("--seq-len", o->seq_len,
                  "Window length / truncation (0: the model's max_position_embeddings)")
      ->default_val(0);
  sub->add_option("--max-samples", o->max_samples, "Sequences to score (0: all)")->default_val(0);
  sub->add_flag("--json", o->json, "Print one JSON object on stdout");
  sub->add_flag("--llama-perplexity", o->llama_perplexity,
                "Score as llama.cpp's llama-perplexity does: each window's first token BOS (when the tokenizer "
                "adds one), only the second half of each window scored");
  sub->add_flag("--llama-cpp-activations", o->llama_cpp_activations,
                "GGUF files: round each linear layer's input as llama.cpp's CPU backend does for the weight's "
                "type (8-bit blocks of 32 for Q4_0..Q8_0, fp16/bf16 for F16/BF16), to compute what llama.cpp computes");
  sub->add_option("--activations", o->activations,
                  "Fake-quantize every block linear layer's input per token and the KV cache per head: act(...) "
                  "and kv(...) specs joined by '+' (act(a4,clip=0.9)+kv(b4,hadamard)) or none; default: the act and "
                  "kv stages of the recipe the checkpoint records");
  sub->add_option("--tokens-out", o->tokens_out,
                  "Write the scored windows, one line of ids each (read back with --tokens FILE "
                  "--data-format tinystories)");
  sub->add_option("--logits-out", o->logits_out, "Write the first window's logits [T, vocab] as float32 .npy");
  sub->add_flag("--quiet", o->quiet, "No progress on stderr");
  add_threads_option(sub, &o->threads);
  o->text.add_to(sub);
  return [o]() {
    if (o->data.empty() && o->text.tokens_file.empty())
      throw ptq::Error("eval: pass --data FILE or --tokens FILE");
    return run_eval(*o);
  };
});

}  // namespace
}  // namespace ptq::cli

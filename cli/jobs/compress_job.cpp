#include "cli/jobs/compress_job.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string_view>
#include <thread>

#include <nlohmann/json.hpp>

#include "ptq/activation_quant.h"
#include "ptq/stages.h"
#include "calibration/text_data.h"
#include "calibration/tokenizer.h"
#include "formats/checkpoint_writer.h"
#include "formats/metadata.h"
#include "formats/output_dir.h"
#include "ptq/error.h"
#include "cli/jobs/resume_state.h"
#include "ptq/sha256.h"
#include "ptq/version.h"

namespace ptq {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

CalibrationSet load_calibration(const Model& model, const CompressJob& job,
                                std::unique_ptr<ActivationFile>* file) {
  if (!job.calib_file.empty()) {
    *file = std::make_unique<ActivationFile>(job.calib_file);
    (*file)->check_fits(model.config());
    return calibration_set_from_file(**file);
  }
  std::unique_ptr<Tokenizer> tok;
  if (!job.calib_request.token_file)
    tok = open_model_tokenizer(model, job.tokenizer);
  return build_calibration_set(model, tok.get(), job.calib_request);
}

// Every stage must parse and every layer's grid must fit the output format; find out before
// hours of work, not after.
void validate_layers(const Model& model, const PipelineOptions& o, const FormatTraits& format) {
  const RecipeStages stages = split_recipe(o.recipe);
  for (const Spec& t : stages.transforms) make_transform(t);
  if (recipe_runtime_quant(o.recipe).enabled() && !format.activation_quant)
    throw Error(std::string("the ") + format.name + " format cannot carry the recipe's act(...)/kv(...) stages: its "
                "engines run full-precision activations and caches, and only ptq evaluates the fake quantization "
                "(use --format ptq or fake)");
  for (const Spec& r : stages.refiners) make_refiner(r);
  for (const auto& name : linear_layer_names(model.config())) {
    auto quantizer = layer_quantizer(name, o);
    if (!quantizer) continue;
    const TensorInfo* info = model.tensors().find(name + ".weight");
    PTQ_ASSERT(info != nullptr, "Model::open checks every linear weight exists");
    const std::string why = format.grid_refusal(int(info->shape[0]), int(info->shape[1]), quantizer->grid());
    if (!why.empty()) throw Error(name + ": " + why);
  }
}

// Everything that decides the output's bytes, as canonical JSON: resume state made from other
// inputs must not be continued. Its "ptq" field names the build; without it, the rest is the
// job's identity, which the output's marker records (formats/output_dir.h).
nlohmann::json fingerprint_inputs(const CompressJob& job, const Model& model, const CalibrationSet& calib,
                                  const std::string& calib_file_sha) {
  nlohmann::json overrides = nlohmann::json::array();
  for (const auto& ov : job.pipeline.overrides) {
    overrides.push_back({{"pattern", ov.pattern},
                         {"bits", ov.bits ? *ov.bits : 0},
                         {"group_size", ov.group_size ? *ov.group_size : 0},
                         {"skip", ov.skip}});
    if (!ov.args.empty()) {  // only when present: older jobs keep their fingerprint
      nlohmann::json args = nlohmann::json::array();
      for (const SpecArg& a : ov.args) args.push_back({a.key, a.value});
      overrides.back()["args"] = args;
    }
    if (!ov.unset.empty()) overrides.back()["unset"] = ov.unset;
  }
  const CalibrationInfo& c = calib.info;
  nlohmann::json j = {
      {"ptq", std::string(kVersion) + " " + kGitCommit},
      {"model_sha256", model.checksum()},
      {"calibration",
       {{"data_sha256", c.data_sha256}, {"sampler", c.sampler}, {"seed", c.seed},
        {"samples", c.samples}, {"seq_len", c.seq_len}, {"windows_sha256", [&] {
           Sha256 h;
           for (const auto& w : calib.windows) {
             h.update(w.data(), w.size() * sizeof(int32_t));
             h.update("|");
           }
           return h.final_hex();
         }()}}},
      {"activation_file_sha256", calib_file_sha},
      {"independent", job.independent},
      {"recipe", recipe_to_string(job.pipeline.recipe)},
      {"true_sequential", job.pipeline.true_sequential},
      {"overrides", overrides},
      {"format", job.format}};
  return j;
}

std::string job_identity(nlohmann::json fingerprint) {
  fingerprint.erase("ptq");
  return sha256_hex(fingerprint.dump());
}

int env_int(const char* name, int def) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : def;
}

// Records what the pipeline sends to the sinks during one block, forwarding it to the writer.
struct BlockRecorder {
  CheckpointWriter* writer;
  BlockRecord current;

  void layer(const LayerResult& r, const QuantizedLayer* q) {
    writer->add_layer(r, q);
    current.results.push_back(r);
    current.weights.push_back(q ? std::optional<QuantizedLayer>(*q) : std::nullopt);
  }
  void tensor(const std::string& name, const Mat& v) {
    writer->replace_tensor(name, v);
    current.tensors.emplace_back(name, v);
  }
};

// Feeds the blocks an earlier run finished to the writer, in the order the pipeline sent them.
std::vector<LayerResult> replay_finished_blocks(const ResumeState& state, CheckpointWriter& writer) {
  std::vector<LayerResult> results;
  for (int l = 0; l < state.completed_blocks(); ++l) {
    BlockRecord rec = state.load_record(l);
    for (const auto& [name, value] : rec.tensors) writer.replace_tensor(name, value);
    for (size_t i = 0; i < rec.results.size(); ++i) {
      writer.add_layer(rec.results[i], rec.weights[i] ? &*rec.weights[i] : nullptr);
      results.push_back(rec.results[i]);
    }
  }
  return results;
}

// Everything after the output directory is claimed; run_compress adds where the partial state
// is kept to any error.
CompressResult compress_into(const CompressJob& job, const Model& model, PipelineOptions options,
                             CheckpointWriter& writer, OutputDir& out,
                             const std::vector<TokenizerOutputFile>& tokenizer_files, Clock::time_point t0) {
  CompressResult result;
  auto t_calib = Clock::now();
  std::unique_ptr<ActivationFile> file;
  CalibrationSet calib;
  bool has_calib = job.has_calib_request || !job.calib_file.empty();
  if (has_calib) calib = load_calibration(model, job, &file);
  if (!has_calib && recipe_needs_stats(options.recipe))
    throw Error("recipe '" + recipe_to_string(job.pipeline.recipe) +
                "' needs calibration data: pass --calib FILE or --calib-data FILE");
  if (job.independent && !file)
    throw Error("independent mode needs a calibration file with captured activations (--calib)");
  if (!has_calib) {
    // RTN without data: one BOS window so the per-layer error still has inputs to measure on.
    calib.windows = {{model.config().bos_token_id, model.config().bos_token_id}};
  }
  if (file) result.calib_file_sha256 = sha256_file_hex(job.calib_file);
  result.model_sha256 = model.checksum();
  result.times.push_back({"calibration", seconds_since(t_calib)});

  auto t_quant = Clock::now();
  const nlohmann::json fingerprint = fingerprint_inputs(job, model, calib, result.calib_file_sha256);
  out.claim(job_identity(fingerprint));
  ResumeState state(out.path_of("resume"), fingerprint.dump(), job.fresh);
  if (state.discarded() && !job.pipeline.quiet)
    std::fprintf(stderr, "compress: resume state in %s was made from other inputs; starting over\n",
                 out.staging().c_str());
  result.resumed_blocks = state.completed_blocks();
  if (result.resumed_blocks > 0) out.keep_on_failure();
  if (result.resumed_blocks > 0 && !job.pipeline.quiet)
    std::fprintf(stderr, "compress: resuming after block %d (state in %s)\n", result.resumed_blocks - 1,
                 out.staging().c_str());
  result.layers = replay_finished_blocks(state, writer);

  BlockRecorder recorder{&writer, {}};
  const int stop_after = env_int(kStopAfterBlockEnv, -1);
  const int delay_ms = env_int(kBlockDelayEnv, 0);
  options.hooks.resume_from = state.completed_blocks();
  options.hooks.done_block = [&](int l) { return state.load_final_weights(model, l); };
  options.hooks.on_block_done = [&](int l, const BlockWeights& w) {
    state.save_block(l, recorder.current, w);
    out.keep_on_failure();
    recorder.current = {};
    if (l == stop_after) _exit(137);
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  };
  LayerSink sink = [&](const LayerResult& r, const QuantizedLayer* q) { recorder.layer(r, q); };
  TensorSink tensor_sink = [&](const std::string& name, const Mat& v) { recorder.tensor(name, v); };
  std::vector<LayerResult> fresh_layers =
      job.independent ? quantize_independent(model, *file, options, sink, tensor_sink)
                      : quantize_sequential(model, calib.windows, options, sink, tensor_sink);
  result.layers.insert(result.layers.end(), fresh_layers.begin(), fresh_layers.end());
  result.has_calibration = has_calib;
  result.calibration = calib.info;
  result.recipe = recipe_to_string(job.pipeline.recipe);
  result.times.push_back({"quantize", seconds_since(t_quant)});

  auto t_write = Clock::now();
  CheckpointMetadata meta{result.recipe, has_calib, calib.info, result.layers};
  writer.finish(model, meta, out);
  for (const auto& f : tokenizer_files) {
    if (f.copy_from.empty()) out.write_text(f.name, f.text);
    else out.copy_file(f.copy_from, f.name);
  }
  out.remove("resume");  // the finished checkpoint holds no resume state
  out.commit();
  result.times.push_back({"write", seconds_since(t_write)});
  result.seconds = seconds_since(t0);
  return result;
}

}  // namespace

// Re-quantizing packed codes would compound two roundings; ask for the fp source instead.
void reject_quantized_source(const Model& model) {
  for (const auto& name : linear_layer_names(model.config()))
    if (model.is_packed_weight(name + ".weight"))
      throw Error(model.path() + ": already quantized ('" + name + "' is packed); compress the "
                  "full-precision checkpoint instead");
}

namespace {

std::string exact_pattern(const std::string& name) {
  std::string out = "^";
  for (char c : name) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out + "$";
}

}  // namespace

std::vector<std::string> add_format_fallbacks(const Model& model, const FormatTraits& format, PipelineOptions& o) {
  std::vector<std::string> lines;
  if (!format.layer_override) return lines;
  std::vector<LayerOverride> added;
  for (const auto& name : linear_layer_names(model.config())) {
    auto quantizer = layer_quantizer(name, o);
    if (!quantizer) continue;
    const TensorInfo* info = model.tensors().find(name + ".weight");
    PTQ_ASSERT(info != nullptr, "Model::open checks every linear weight exists");
    std::optional<FormatFallback> f =
        format.layer_override(name, model.config(), int(info->shape[0]), int(info->shape[1]), quantizer->grid());
    if (!f) continue;
    f->override.pattern = exact_pattern(name);
    added.push_back(f->override);
    lines.push_back(name + ": " + f->why);
  }
  o.overrides.insert(o.overrides.end(), added.begin(), added.end());
  return lines;
}

PipelineOptions pipeline_options(const CompressJob& job) {
  PipelineOptions o = job.pipeline;
  o.constraints = format_traits(job.format).constraints;
  return o;
}

void validate_job_layers(const CompressJob& job) {
  if (job.pipeline.recipe.empty()) throw Error("the recipe has no quantizer stage");
  const FormatTraits& format = format_traits(job.format);
  Model model = Model::open(job.model_path);
  reject_quantized_source(model);
  PipelineOptions options = pipeline_options(job);
  add_format_fallbacks(model, format, options);
  validate_layers(model, options, format);
}

CompressResult run_compress(const CompressJob& job) {
  auto t0 = Clock::now();
  std::unique_ptr<CheckpointWriter> writer = make_checkpoint_writer(job.format);
  if (job.pipeline.recipe.empty()) throw Error("the recipe has no quantizer stage");
  Model model = Model::open(job.model_path);
  reject_quantized_source(model);
  PipelineOptions options = pipeline_options(job);
  for (const std::string& line : add_format_fallbacks(model, writer->traits(), options))
    if (!options.quiet) std::fprintf(stderr, "ptq: %s\n", line.c_str());
  validate_layers(model, options, writer->traits());
  writer->prepare(model, writer->embeds_tokenizer() ? embeddable_tokenizer(model, job.tokenizer) : nullptr);
  model.check_finite_weights();
  // Made now so that a tokenizer the output cannot carry fails before any work or staging.
  const std::vector<TokenizerOutputFile> tokenizer_files = tokenizer_output_files(model, job.tokenizer);
  // Fails early, before the long work, if OUT is unwritable, not ours, or another run holds it.
  OutputDir out(job.out_dir, OutputDir::Staging::kResumable, job.overwrite);
  try {
    return compress_into(job, model, options, *writer, out, tokenizer_files, t0);
  } catch (const std::exception& e) {
    const std::string note = out.partial_note();
    if (note.empty()) throw;
    throw Error(std::string(e.what()) + "; " + note);
  }
}

}  // namespace ptq

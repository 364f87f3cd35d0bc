#include "ptq/compress_job.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "algorithms/transform.h"
#include "calibration/text_data.h"
#include "calibration/tokenizer.h"
#include "formats/checkpoint_writer.h"
#include "formats/metadata.h"
#include "formats/output_dir.h"
#include "ptq/error.h"
#include "ptq/resume_state.h"
#include "ptq/sha256.h"
#include "ptq/version.h"

namespace ptq {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

bool recipe_needs_stats(const PipelineOptions& o) {
  // Ask the quantizer itself rather than knowing algorithm names.
  return make_quantizer(o.recipe.back())->needs_stats();
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

// Every layer's grid must fit the output format; find out before hours of work, not after.
void validate_layers(const Model& model, const PipelineOptions& o, const CheckpointWriter& writer) {
  for (size_t i = 0; i + 1 < o.recipe.size(); ++i) make_transform(o.recipe[i]);
  for (const auto& name : linear_layer_names(model.config())) {
    auto quantizer = layer_quantizer(name, o);
    if (!quantizer) continue;
    const TensorInfo* info = model.tensors().find(name + ".weight");
    PTQ_ASSERT(info != nullptr, "Model::open checks every linear weight exists");
    writer.validate(name, int(info->shape[0]), int(info->shape[1]), quantizer->grid());
  }
}

// Everything that decides the output's bytes, as canonical JSON: resume state made from other
// inputs must not be continued.
std::string fingerprint_inputs(const CompressJob& job, const Model& model, const CalibrationSet& calib,
                               const std::string& calib_file_sha) {
  nlohmann::json overrides = nlohmann::json::array();
  for (const auto& ov : job.pipeline.overrides)
    overrides.push_back({{"pattern", ov.pattern},
                         {"bits", ov.bits ? *ov.bits : 0},
                         {"group_size", ov.group_size ? *ov.group_size : 0},
                         {"skip", ov.skip}});
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
  return j.dump();
}

int env_int(const char* name, int def) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : def;
}

// Records what the pipeline sends to the sinks during one block, forwarding it to the writer.
struct BlockRecorder {
  CheckpointWriter* writer;
  BlockRecord current;

  void layer(const LayerResult& r, const GridCodes* q) {
    writer->add_layer(r, q);
    current.results.push_back(r);
    current.weights.push_back(q ? std::optional<GridCodes>(*q) : std::nullopt);
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

}  // namespace

// Re-quantizing packed codes would compound two roundings; ask for the fp source instead.
void reject_quantized_source(const Model& model) {
  for (const auto& name : linear_layer_names(model.config()))
    if (model.is_packed_weight(name + ".weight"))
      throw Error(model.path() + ": already quantized ('" + name + "' is packed); compress the "
                  "full-precision checkpoint instead");
}

void validate_job_layers(const CompressJob& job) {
  if (job.pipeline.recipe.empty()) throw Error("the recipe has no quantizer stage");
  std::unique_ptr<CheckpointWriter> writer = make_checkpoint_writer(job.format);
  Model model = Model::open(job.model_path);
  reject_quantized_source(model);
  validate_layers(model, job.pipeline, *writer);
}

CompressResult run_compress(const CompressJob& job) {
  auto t0 = Clock::now();
  std::unique_ptr<CheckpointWriter> writer = make_checkpoint_writer(job.format);
  if (job.pipeline.recipe.empty()) throw Error("the recipe has no quantizer stage");
  Model model = Model::open(job.model_path);
  reject_quantized_source(model);
  validate_layers(model, job.pipeline, *writer);
  // Made now so that a tokenizer the output cannot carry fails before any work or staging.
  const std::vector<TokenizerOutputFile> tokenizer_files = tokenizer_output_files(model, job.tokenizer);
  // Fails early, before the long work, if OUT is unwritable or another run holds it.
  OutputDir out(job.out_dir, OutputDir::Staging::kResumable);

  CompressResult result;
  auto t_calib = Clock::now();
  std::unique_ptr<ActivationFile> file;
  CalibrationSet calib;
  bool has_calib = job.has_calib_request || !job.calib_file.empty();
  if (has_calib) calib = load_calibration(model, job, &file);
  if (!has_calib && recipe_needs_stats(job.pipeline))
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
  ResumeState state(out.path_of("resume"), fingerprint_inputs(job, model, calib, result.calib_file_sha256),
                    job.fresh);
  if (state.discarded() && !job.pipeline.quiet)
    std::fprintf(stderr, "compress: resume state in %s was made from other inputs; starting over\n",
                 out.staging().c_str());
  result.resumed_blocks = state.completed_blocks();
  if (result.resumed_blocks > 0 && !job.pipeline.quiet)
    std::fprintf(stderr, "compress: resuming after block %d (state in %s)\n", result.resumed_blocks - 1,
                 out.staging().c_str());
  result.layers = replay_finished_blocks(state, *writer);

  BlockRecorder recorder{writer.get(), {}};
  const int stop_after = env_int(kStopAfterBlockEnv, -1);
  const int delay_ms = env_int(kBlockDelayEnv, 0);
  PipelineOptions options = job.pipeline;
  options.hooks.resume_from = state.completed_blocks();
  options.hooks.done_block = [&](int l) { return state.load_final_weights(model, l); };
  options.hooks.on_block_done = [&](int l, const BlockWeights& w) {
    state.save_block(l, recorder.current, w);
    recorder.current = {};
    if (l == stop_after) _exit(137);
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  };
  LayerSink sink = [&](const LayerResult& r, const GridCodes* q) { recorder.layer(r, q); };
  TensorSink tensor_sink = [&](const std::string& name, const Mat& v) { recorder.tensor(name, v); };
  std::vector<LayerResult> fresh_layers =
      job.independent ? quantize_independent(model, *file, options, sink, tensor_sink)
                      : quantize_sequential(model, calib, options, sink, tensor_sink);
  result.layers.insert(result.layers.end(), fresh_layers.begin(), fresh_layers.end());
  result.has_calibration = has_calib;
  result.calibration = calib.info;
  result.recipe = recipe_to_string(job.pipeline.recipe);
  result.times.push_back({"quantize", seconds_since(t_quant)});

  auto t_write = Clock::now();
  CheckpointMetadata meta{result.recipe, has_calib, calib.info, result.layers};
  writer->finish(model, meta, out);
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

}  // namespace ptq

#include "ptq/compress_job.h"

#include <chrono>

#include "calibration/text_data.h"
#include "calibration/tokenizer.h"
#include "formats/checkpoint_writer.h"
#include "formats/metadata.h"
#include "formats/output_dir.h"
#include "ptq/error.h"

namespace ptq {
namespace {

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
  if (!job.calib_request.token_file) {
    std::string path = find_model_tokenizer(model.path(), job.tokenizer);
    if (path.empty())
      throw Error(model.path() + ": no tokenizer for the calibration text; pass --tokenizer FILE");
    tok = load_tokenizer(path);
  }
  return build_calibration_set(model, tok.get(), job.calib_request);
}

// Every layer's grid must fit the output format; find out before hours of work, not after.
void validate_layers(const Model& model, const PipelineOptions& o, const CheckpointWriter& writer) {
  for (const auto& name : linear_layer_names(model.config())) {
    auto quantizer = layer_quantizer(name, o);
    if (!quantizer) continue;
    const TensorInfo* info = model.tensors().find(name + ".weight");
    PTQ_ASSERT(info != nullptr, "Model::open checks every linear weight exists");
    writer.validate(name, int(info->shape[0]), int(info->shape[1]), quantizer->grid());
  }
}

}  // namespace

CompressResult run_compress(const CompressJob& job) {
  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<CheckpointWriter> writer = make_checkpoint_writer(job.format);
  if (job.pipeline.recipe.empty()) throw Error("the recipe has no quantizer stage");
  Model model = Model::open(job.model_path);
  validate_layers(model, job.pipeline, *writer);
  OutputDir out(job.out_dir);  // fails early, before the long work, if OUT is unwritable

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

  LayerSink sink = [&](const LayerResult& r, const QuantizedWeight* q) { writer->add_layer(r, q); };
  TensorSink tensor_sink = [&](const std::string& name, const Mat& v) { writer->replace_tensor(name, v); };
  CompressResult result;
  result.layers = job.independent ? quantize_independent(model, *file, job.pipeline, sink, tensor_sink)
                                  : quantize_sequential(model, calib, job.pipeline, sink, tensor_sink);
  result.has_calibration = has_calib;
  result.calibration = calib.info;
  result.recipe = recipe_to_string(job.pipeline.recipe);

  CheckpointMetadata meta{result.recipe, has_calib, calib.info, result.layers};
  writer->finish(model, meta, out);
  std::string tok = find_model_tokenizer(model.path(), job.tokenizer);
  if (!tok.empty()) {
    bool spm = load_tokenizer(tok)->kind() == "sentencepiece";
    out.copy_file(tok, spm ? "tokenizer.model" : "tokenizer.bin");
  }
  out.commit();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace ptq

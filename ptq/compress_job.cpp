#include "ptq/compress_job.h"

#include <chrono>
#include <map>

#include "calibration/text_data.h"
#include "calibration/tokenizer.h"
#include "formats/fake_quant.h"
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

}  // namespace

CompressResult run_compress(const CompressJob& job) {
  auto t0 = std::chrono::steady_clock::now();
  if (job.format != "fake")
    throw Error("output format '" + job.format + "' is not available (supported: fake)");
  if (job.pipeline.recipe.empty()) throw Error("the recipe has no quantizer stage");
  Model model = Model::open(job.model_path);
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

  std::map<std::string, Mat> dequantized;
  LayerSink sink = [&](const LayerResult& r, const QuantizedWeight* q) {
    if (q) dequantized[r.name] = q->dequantize();
  };
  CompressResult result;
  result.layers = job.independent ? quantize_independent(model, *file, job.pipeline, sink)
                                  : quantize_sequential(model, calib, job.pipeline, sink);
  result.has_calibration = has_calib;
  result.calibration = calib.info;
  result.recipe = recipe_to_string(job.pipeline.recipe);

  CheckpointMetadata meta{result.recipe, has_calib, calib.info, result.layers};
  write_fake_quant(model, dequantized, meta, out);
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

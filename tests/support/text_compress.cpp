#include "support/text_compress.h"

#include "support/shared_data.h"

namespace ptq::test {

CompressJob text_compress_job(const std::string& model, const std::string& calib, const std::string& recipe,
                              const std::string& format, const std::string& name, int samples, int seq_len) {
  CompressJob job;
  job.model_path = model;
  job.has_calib_request = true;
  job.calib_request = {calib, DataFormat::kText, false, samples, seq_len, 0};
  job.pipeline.recipe = parse_recipe(recipe);
  job.pipeline.quiet = true;
  job.out_dir = temp_dir(name) + "/out";
  job.format = format;
  job.fresh = true;
  return job;
}

}  // namespace ptq::test

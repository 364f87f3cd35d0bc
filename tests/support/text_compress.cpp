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

void PydocCompressTest::SetUp() {
  model_ = shared_path("models/pydoc4M");
  calib_ = shared_path("data/pydoc/calib.txt");
  if (model_.empty() || calib_.empty())
    GTEST_SKIP() << "shared data (pydoc4M, pydoc text) not found: set PTQ_SHARED_DIR";
}

std::string PydocCompressTest::compress(const std::string& recipe, const std::string& format, const std::string& name) {
  const CompressJob job = text_compress_job(model_, calib_, recipe, format, prefix_ + name);
  run_compress(job);
  return job.out_dir;
}

std::vector<int32_t> spread_ids(int n) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back(int32_t((i * 37 + 5) % 2048));
  return v;
}

}  // namespace ptq::test

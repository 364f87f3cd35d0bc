// Every example job in configs/ parses and validates against its model and output format (the
// paths in them are relative to the repository root, where README runs them).
#include <gtest/gtest.h>

#include <filesystem>

#include "cli/jobs/job_config.h"
#include "support/shared_data.h"

namespace ptq {
namespace {

namespace fs = std::filesystem;

TEST(Configs, EveryExampleJobLoads) {
  PTQ_REQUIRE_SHARED("models/stories260K/hf", model);
  if (fs::weakly_canonical(fs::path(PTQ_SOURCE_DIR) / ".." / "shared") !=
      fs::weakly_canonical(test::shared_dir()))
    GTEST_SKIP() << "configs/ name ../shared; PTQ_SHARED_DIR points elsewhere";
  const fs::path cwd = fs::current_path();
  fs::current_path(PTQ_SOURCE_DIR);
  int count = 0;
  for (const auto& e : fs::directory_iterator("configs")) {
    if (e.path().extension() != ".yaml") continue;
    ++count;
    EXPECT_NO_THROW({
      JobSpec job = load_job_file(e.path().string());
      EXPECT_FALSE(job.compress.pipeline.recipe.empty()) << e.path();
      EXPECT_FALSE(job.evals.empty()) << e.path();
    }) << e.path();
  }
  fs::current_path(cwd);
  EXPECT_GE(count, 5);
}

}  // namespace
}  // namespace ptq

// A `ptq run` job file: parse_job_yaml with every check it makes before work (types, keys,
// recipes, the model it names, the output format's grid checks). Relative paths in the seeds
// (configs/*.yaml) resolve against the repository root.
#include "fuzz_target.h"
#include "ptq/error.h"
#include "cli/jobs/job_config.h"

PTQ_FUZZ_TARGET(job_yaml) {
  ptq::fuzz::enter_source_dir();
  try {
    (void)ptq::parse_job_yaml(std::string(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
  } catch (const ptq::Error&) {
  }
  return 0;
}

#pragma once
// The one code path of `ptq run JOB.yaml` and `ptq compress`: compress (with resume), evaluate
// the fp model and the output on every dataset of the job, write the report.
#include <nlohmann/json.hpp>

#include "cli/jobs/job_config.h"
#include "cli/jobs/report.h"

namespace ptq {

struct JobOutcome {
  CompressResult compress;
  nlohmann::json report;  // also written to job.report_dir when set
};

JobOutcome run_job(const JobSpec& job);

}  // namespace ptq

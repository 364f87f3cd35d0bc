#pragma once
// What `ptq run` and `ptq compress` share on the command line: progress options and printing a
// finished job's outcome.
#include "cli/command.h"
#include "cli/jobs/job_run.h"

namespace ptq::cli {

struct ProgressOptions {
  bool quiet = false, log_json = false;
  void add_to(CLI::App* sub);
  void apply() const;  // sets the process's progress style
};

// The per-layer table (when `layers`), the ppl table, and where the output and report went.
void print_outcome(const JobSpec& job, const JobOutcome& outcome, bool layers);

}  // namespace ptq::cli

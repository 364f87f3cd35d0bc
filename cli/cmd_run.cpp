#include <cstdio>

#include "cli/job_cli.h"
#include "ptq/error.h"
#include "cli/jobs/job_config.h"

namespace ptq::cli {
namespace {

struct RunOptions {
  std::string job_file;
  int threads = -1;
  bool fresh = false, print_schema = false;
  ProgressOptions progress;
};

int run_job_cmd(const RunOptions& o) {
  if (o.print_schema) {
    std::printf("%s", job_schema_text().c_str());
    return 0;
  }
  if (o.job_file.empty()) throw ptq::Error("run: pass a job file (ptq run JOB.yaml; see --print-schema)");
  o.progress.apply();
  JobSpec job = load_job_file(o.job_file);
  if (o.threads >= 0) job.threads = o.threads;
  job.compress.fresh = o.fresh;
  job.compress.pipeline.quiet = o.progress.quiet;
  JobOutcome outcome = run_job(job);
  print_outcome(job, outcome, false);
  return 0;
}

CommandRegistrar reg("run", "Run a YAML job: compress, evaluate fp vs quantized, write the report",
                     [](CLI::App* sub) {
  auto o = std::make_shared<RunOptions>();
  sub->add_option("job", o->job_file, "YAML job file (schema: --print-schema, docs/jobs.md)");
  sub->add_option("--threads", o->threads, "Threads; overrides the job's `threads` (-1: the job's)")
      ->default_val(-1);
  sub->add_flag("--fresh", o->fresh,
                "Ignore resume state of an interrupted run and start over (default: off, resume)");
  sub->add_flag("--print-schema", o->print_schema, "Print the job file schema and exit (default: off)");
  o->progress.add_to(sub);
  return [o]() { return run_job_cmd(*o); };
});

}  // namespace
}  // namespace ptq::cli

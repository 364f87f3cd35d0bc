#include "cli/job_cli.h"

#include <cstdio>

#include "ptq/progress.h"

namespace ptq::cli {

void ProgressOptions::add_to(CLI::App* sub) {
  sub->add_flag("--quiet", quiet, "No progress or log lines on stderr (default: off)");
  sub->add_flag("--log-json", log_json,
                "Progress as one JSON object per line on stderr: stage, done, total, elapsed (default: off)");
}

void ProgressOptions::apply() const {
  set_progress_style(quiet ? ProgressStyle::kQuiet : log_json ? ProgressStyle::kJson : ProgressStyle::kHuman);
}

void print_outcome(const JobSpec& job, const JobOutcome& outcome, bool layers) {
  const CompressResult& r = outcome.compress;
  if (progress_style() == ProgressStyle::kHuman) {
    std::fprintf(stderr, "compress: %s, %zu layers in %.2fs -> %s%s\n", r.recipe.c_str(), r.layers.size(),
                 r.seconds, job.compress.out_dir.c_str(),
                 r.resumed_blocks > 0 ? (" (resumed after " + std::to_string(r.resumed_blocks) + " blocks)").c_str()
                                      : "");
  }
  if (layers) {
    std::printf("%-40s %-24s %12s %8s\n", "layer", "spec", "rel_error", "bits/w");
    for (const auto& l : r.layers)
      std::printf("%-40s %-24s %12.6g %8.3f\n", l.name.c_str(), l.spec.c_str(), l.rel_error, l.bits_per_weight);
  }
  if (!job.evals.empty() || !layers) std::printf("%s", ppl_table_text(outcome.report).c_str());
  if (!job.report_dir.empty()) std::printf("report: %s/report.html\n", job.report_dir.c_str());
}

}  // namespace ptq::cli

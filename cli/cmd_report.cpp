#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/jobs/report.h"
#include "ptq/error.h"

namespace ptq::cli {
namespace {

struct ReportOptions {
  std::vector<std::string> compare;
  std::string render, out;
};

int run_report(const ReportOptions& o, bool compare) {
  if (compare) {
    std::printf("%s", compare_reports_text(read_report(o.compare[0]), o.compare[0],
                                           read_report(o.compare[1]), o.compare[1])
                          .c_str());
    return 0;
  }
  std::string dir = o.out;
  if (dir.empty()) {
    size_t slash = o.render.find_last_of('/');
    dir = slash == std::string::npos ? "." : o.render.substr(0, slash);
  }
  write_report(dir, read_report(o.render));
  std::printf("report: %s/report.html\n", dir.c_str());
  return 0;
}

CommandRegistrar reg("report", "Compare job reports side by side, or re-render one", [](CLI::App* sub) {
  auto o = std::make_shared<ReportOptions>();
  sub->require_subcommand(1);
  CLI::App* cmp = sub->add_subcommand("compare", "Side-by-side table of two reports (changed rows marked *)");
  cmp->add_option("reports", o->compare, "A/report.json B/report.json")->required()->expected(2);
  CLI::App* render = sub->add_subcommand("render", "Write report.md and report.html again from a report.json");
  render->add_option("report", o->render, "report.json")->required();
  render->add_option("--out", o->out, "Directory to write into (default: the report's own directory)");
  return [o, cmp]() {
    try {
      return run_report(*o, cmp->parsed());
    } catch (const nlohmann::json::exception& e) {  // a report.json edited into another shape
      throw ptq::Error("report: a report lacks the fields ptq writes (" + std::string(e.what()) + ")");
    }
  };
});

}  // namespace
}  // namespace ptq::cli

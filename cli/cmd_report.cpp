#include <cstdio>

#include "cli/command.h"
#include "cli/jobs/report.h"

namespace ptq::cli {
namespace {

struct ReportOptions {
  std::vector<std::string> compare;
  std::string render, out;
};

CommandRegistrar reg("report", "Compare job reports side by side, or re-render one", [](CLI::App* sub) {
  auto o = std::make_shared<ReportOptions>();
  sub->require_subcommand(1);
  CLI::App* cmp = sub->add_subcommand("compare", "Side-by-side table of two reports (changed rows marked *)");
  cmp->add_option("reports", o->compare, "A/report.json B/report.json")->required()->expected(2);
  CLI::App* render = sub->add_subcommand("render", "Write report.md and report.html again from a report.json");
  render->add_option("report", o->render, "report.json")->required();
  render->add_option("--out", o->out, "Directory to write into (default: the report's own directory)");
  return [o, cmp]() {
    if (cmp->parsed()) {
      std::printf("%s", compare_reports_text(read_report(o->compare[0]), o->compare[0],
                                             read_report(o->compare[1]), o->compare[1])
                            .c_str());
      return 0;
    }
    std::string dir = o->out;
    if (dir.empty()) {
      size_t slash = o->render.find_last_of('/');
      dir = slash == std::string::npos ? "." : o->render.substr(0, slash);
    }
    write_report(dir, read_report(o->render));
    std::printf("report: %s/report.html\n", dir.c_str());
    return 0;
  };
});

}  // namespace
}  // namespace ptq::cli

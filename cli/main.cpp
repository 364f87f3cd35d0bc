#include <cstdio>
#include <map>
#include <string>

#include "cli/command.h"
#include "ptq/error.h"
#include "ptq/version.h"

namespace ptq::cli {
namespace {
struct Entry {
  std::string help;
  CommandSetup setup;
};
std::map<std::string, Entry>& commands() {
  static std::map<std::string, Entry> m;
  return m;
}
}  // namespace

CommandRegistrar::CommandRegistrar(const std::string& name, const std::string& help,
                                   CommandSetup setup) {
  commands()[name] = Entry{help, std::move(setup)};
}

}  // namespace ptq::cli

int main(int argc, char** argv) {
  using namespace ptq::cli;
  CLI::App app{"ptq: post-training quantization for large language models"};
  app.set_version_flag("--version", std::string("ptq ") + ptq::kVersion + " (" + ptq::kGitCommit + ")");
  app.require_subcommand(1);
  app.get_formatter()->column_width(36);
  std::map<std::string, Runner> runners;
  std::map<std::string, CLI::App*> subs;
  for (auto& [name, entry] : commands()) {
    CLI::App* sub = app.add_subcommand(name, entry.help);
    subs[name] = sub;
    runners[name] = entry.setup(sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    for (auto& [name, sub] : subs)
      if (sub->parsed()) return runners[name]();
  } catch (const ptq::Error& e) {
    std::fprintf(stderr, "ptq: error: %s\n", e.what());
    return 2;
  }
  return 2;
}

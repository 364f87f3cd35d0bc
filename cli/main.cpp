#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <map>
#include <new>
#include <string>

#include "cli/command.h"
#include "ptq/error.h"
#include "ptq/version.h"

namespace ptq::cli {
namespace {
constexpr const char* kBoundedSpinCount = "10000";
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

// One line on stderr: messages that quote inputs may hold newlines.
int fail(std::string message) {
  for (char& c : message)
    if (c == '\n' || c == '\r') c = ' ';
  std::fprintf(stderr, "ptq: error: %s\n", message.c_str());
  return 2;
}

// libgomp reads its wait policy once, when it is loaded, and by default spins for a long time
// before a waiting thread sleeps: with any other load on the machine that doubles a job's wall
// time (docs/performance.md). Unless the user chose a policy, ptq re-executes itself once with a
// bounded spin; the variable it sets stops a second re-execution.
static void bound_openmp_spin(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  if (setenv("GOMP_SPINCOUNT", kBoundedSpinCount, 1) != 0) return;
  execv("/proc/self/exe", argv);  // returns only on failure: then run with the library's default
}

}  // namespace ptq::cli

int main(int argc, char** argv) {
  using namespace ptq::cli;
  bound_openmp_spin(argv);
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
  // Every failure ends here as one line and exit code 2, whatever threw it: inputs are
  // validated up front, so the std:: cases below are the safety net, not the plan.
  try {
    for (auto& [name, sub] : subs)
      if (sub->parsed()) return runners[name]();
  } catch (const ptq::Error& e) {
    return fail(e.what());
  } catch (const std::bad_alloc&) {
    return fail("out of memory (an input asks for more memory than this machine has)");
  } catch (const std::filesystem::filesystem_error& e) {
    return fail(e.what());
  } catch (const std::exception& e) {
    return fail(std::string("unexpected failure: ") + e.what());
  } catch (...) {
    return fail("unexpected failure (unknown exception)");
  }
  return 2;
}

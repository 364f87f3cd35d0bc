#pragma once
// Subcommands register themselves: each cli/cmd_*.cpp defines a static CommandRegistrar whose
// setup adds options to its CLI11 subcommand and returns the function that runs it.
// Runners return the process exit code; ptq::Error thrown from them becomes one line on stderr
// and exit code 2 (cli/main.cpp).
#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace ptq::cli {

using Runner = std::function<int()>;
using CommandSetup = std::function<Runner(CLI::App* sub)>;

struct CommandRegistrar {
  CommandRegistrar(const std::string& name, const std::string& help, CommandSetup setup);
};

}  // namespace ptq::cli

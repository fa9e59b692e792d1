// The qkv program's subcommands register themselves here, one file per subcommand family, so that the
// program's main() stays a short list-free dispatcher.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace qkv::cli {

// A subcommand family: `setup` adds its subcommand(s) to the app, with their callbacks.
struct Command {
  std::string name;
  int order;  // position in `qkv --help`
  std::function<void(CLI::App&)> setup;
};

std::vector<Command>& registry();

// `static RegisterCommand reg{"bleu", 50, setup_bleu};` at namespace scope in the subcommand's file.
struct RegisterCommand {
  RegisterCommand(std::string name, int order, std::function<void(CLI::App&)> setup) {
    registry().push_back({std::move(name), order, std::move(setup)});
  }
};

// The program's command line as it was invoked (argv[0] first), for commands that start copies of
// themselves (`qkv train --nproc`).
std::vector<std::string>& invocation();

// The exit status main() returns when no error was thrown (a command that ran other processes passes
// theirs on).
void set_exit_status(int status);
int exit_status();

// Parses "key=value" strings given to a repeatable --set.
inline void add_set_option(CLI::App& cmd, std::vector<std::string>& sets) {
  cmd.add_option("--set", sets, "Override a config key, e.g. --set train.warmup=800 (repeatable)")
      ->type_name("KEY=VALUE");
}

}  // namespace qkv::cli

// qkv: the command-line program. Each subcommand lives in its own tools/cmd_*.cpp file and registers
// itself (cli.h); main() sets up threads, parses, and turns exceptions into one line and an exit code:
// 2 for usage and config errors, 1 for runtime errors, 130 for a stop requested (Ctrl-C) during set-up.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <new>

#include <c10/util/Exception.h>
#include <fmt/format.h>

#include "base/error.h"
#include "cli.h"
#include "dist/launch.h"
#include "runtime/heap.h"
#include "runtime/signals.h"
#include "runtime/threads.h"

namespace qkv::cli {
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
std::vector<std::string>& invocation() {
  static std::vector<std::string> args;
  return args;
}
namespace {
int g_exit_status = 0;
}
void set_exit_status(int status) {
  g_exit_status = status;
}
int exit_status() {
  return g_exit_status;
}
}  // namespace qkv::cli

int main(int argc, char** argv) {
  // Before any big allocation: freed blocks stay in the heap for the next training step (runtime/heap.h).
  qkv::keep_freed_memory();
  // Under a file size limit (ulimit -f) a write past it would kill the program with SIGXFSZ; ignored,
  // the write fails with EFBIG and a save reports it like a full disk (one line, exit 1).
  std::signal(SIGXFSZ, SIG_IGN);
  qkv::cli::invocation().assign(argv, argv + argc);
  CLI::App app{"qkv: train encoder-decoder Transformers (Vaswani et al. 2017) on libtorch"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  int threads = 0;
  app.add_option("--threads", threads,
                 "Cores to use, for ATen and BLAS together (0 = every core this process may run on)")
      ->check(CLI::NonNegativeNumber);
  // The processes of a data-parallel run on this machine share its cores (docs/distributed.md).
  app.parse_complete_callback(
      [&] { qkv::configure_threads(threads, qkv::dist::LaunchInfo::from_environment().local_world_size); });

  auto& commands = qkv::cli::registry();
  std::sort(commands.begin(), commands.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
  for (auto& command : commands) command.setup(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const qkv::StopRequested& e) {
    std::cerr << "qkv: " << qkv::one_line(e.what()) << ": stopped; nothing was trained or saved\n";
    return 130;  // the shell's code for a program ended by SIGINT
  } catch (const qkv::ConfigError& e) {
    std::cerr << "qkv: config error: " << qkv::one_line(e.what()) << "\n";
    return 2;
  } catch (const c10::Error& e) {
    // libtorch's errors carry a C++ backtrace in what(); the message alone is what a user needs.
    std::cerr << "qkv: error: " << qkv::one_line(e.what_without_backtrace()) << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "qkv: error: out of memory (std::bad_alloc); lower the model, batch or beam sizes\n";
    return 1;
  } catch (const std::exception& e) {
    // one_line also cuts a backtrace that a libtorch message wrapped in another error still carries.
    std::cerr << "qkv: error: " << qkv::one_line(e.what()) << "\n";
    return 1;
  }
  return qkv::cli::exit_status();
}

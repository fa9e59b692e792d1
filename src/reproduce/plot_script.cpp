// Running the plotting scripts: see plot_script.h.
#include "reproduce/plot_script.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <stdexcept>

#include <fmt/format.h>
#include <sys/wait.h>

namespace qkv {
namespace {

namespace fs = std::filesystem;

// 'text' for the shell, with embedded single quotes escaped.
std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string python_interpreter() {
  const char* env = std::getenv("QKV_PYTHON");
  return env != nullptr && *env != '\0' ? env : "/usr/bin/python3";
}

}  // namespace

std::string find_tool_script(const std::string& name) {
  std::vector<fs::path> candidates;
  if (const char* dir = std::getenv("QKV_TOOLS_DIR"); dir != nullptr && *dir != '\0')
    candidates.push_back(fs::path(dir) / name);
  candidates.push_back(fs::path("tools") / name);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path().parent_path() / "tools" / name);  // build/qkv: the checkout's
#ifdef QKV_TOOLS_FROM_BIN
    candidates.push_back(exe.parent_path() / QKV_TOOLS_FROM_BIN / name);  // where `cmake --install` puts them
#endif
  }
  std::string looked;
  for (const auto& path : candidates) {
    if (fs::is_regular_file(path, ec)) return path.string();
    looked += (looked.empty() ? "" : ", ") + path.string();
  }
  throw std::runtime_error(
      fmt::format("cannot find the script tools/{} (looked at {}); run qkv from the repository root or set "
                  "QKV_TOOLS_DIR to the repository's tools/ directory",
                  name, looked));
}

void run_python_script(const std::string& script, const std::vector<std::string>& args) {
  const std::string python = python_interpreter();
  std::error_code ec;
  if (!fs::exists(python, ec)) {
    throw std::runtime_error(fmt::format(
        "plotting needs {} with matplotlib, and {} does not exist (on Debian: apt install python3 "
        "python3-matplotlib; or set QKV_PYTHON to an interpreter that has matplotlib)",
        python, python));
  }
  std::string command = shell_quote(python) + " " + shell_quote(script);
  for (const auto& arg : args) command += " " + shell_quote(arg);
  std::cout.flush();  // our lines first, then the script's
  std::fflush(nullptr);
  const int status = std::system(command.c_str());
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(fmt::format("{} {} failed (exit status {}); its message is above", python,
                                         script, WIFEXITED(status) ? WEXITSTATUS(status) : status));
  }
}

}  // namespace qkv

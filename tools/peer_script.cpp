// Running a benchmark's PyTorch peer: see peer_script.h.
#include "peer_script.h"

#include <cstdio>
#include <stdexcept>

#include <fmt/format.h>

#include "reproduce/plot_script.h"
#include "runtime/heap.h"

namespace qkv::cli {
namespace {

// 'text' for the shell, with embedded single quotes escaped.
std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

}  // namespace

std::string find_peer_script(const std::string& name, const std::string& path) {
  return path.empty() ? find_tool_script(name) : path;
}

nlohmann::json run_peer_script(const std::string& python, const std::string& script,
                               const std::vector<std::string>& args) {
  // The peer runs under this process's heap policy (runtime/heap.h), so neither side pays page faults
  // that the other does not.
  std::string command = heap_policy_environment() + shell_quote(python) + " " + shell_quote(script);
  for (const auto& arg : args) command += " " + shell_quote(arg);
  command += " 2>&1";
  std::fflush(nullptr);  // our lines first
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot start the PyTorch peer: " + command);
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  const int status = ::pclose(pipe);
  if (status != 0)
    throw std::runtime_error(fmt::format("the PyTorch peer failed ({}):\n{}", command, output));
  std::string last_line = output;
  while (!last_line.empty() && last_line.back() == '\n') last_line.pop_back();
  last_line.erase(0, last_line.find_last_of('\n') + 1);  // npos + 1 = 0: a one-line output is kept
  try {
    return nlohmann::json::parse(last_line);
  } catch (const nlohmann::json::exception&) {
    throw std::runtime_error(
        fmt::format("the PyTorch peer printed no JSON result ({}):\n{}", command, output));
  }
}

}  // namespace qkv::cli

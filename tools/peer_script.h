// The PyTorch peers of the benchmarks (tools/peer_train.py, tools/peer_decode.py): `qkv bench train`
// and `qkv bench decode` run the same measurement in eager PyTorch, under Debian's /usr/bin/python3
// and its python3-torch, in the same run, and read the one JSON object the script prints last.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qkv::cli {

// `path` when given (--peer-script), else tools/<name> found where qkv finds its plotting scripts
// (find_tool_script, reproduce/plot_script.h: $QKV_TOOLS_DIR, ./tools, the checkout above the build
// directory, share/qkv/tools of an installed qkv).
std::string find_peer_script(const std::string& name, const std::string& path);

// Runs `python script args...` (stdout and stderr together) and returns the JSON object on the last
// line of its output. Throws std::runtime_error with the command and the output when the script fails
// or prints no JSON.
nlohmann::json run_peer_script(const std::string& python, const std::string& script,
                               const std::vector<std::string>& args);

}  // namespace qkv::cli

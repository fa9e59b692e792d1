// Running the plotting scripts in tools/ (plot_curves.py, plot_attention.py): qkv writes the numbers
// as CSV or JSON and Debian's /usr/bin/python3 with matplotlib draws them. qkv itself never links
// Python; a missing interpreter, script or matplotlib is a clear error, never a crash.
#pragma once

#include <string>
#include <vector>

namespace qkv {

// The path of tools/<name>: $QKV_TOOLS_DIR/<name>, else ./tools/<name>, else <dir of the qkv
// executable>/../tools/<name> (the build directory sits in the repository), else
// <dir of the qkv executable>/../share/qkv/tools/<name> (an installed qkv). Throws
// std::runtime_error naming the places it looked.
std::string find_tool_script(const std::string& name);

// Runs `python script args...` with the interpreter $QKV_PYTHON or /usr/bin/python3 and waits for it.
// Throws std::runtime_error when the interpreter is missing or the script exits with an error (its
// own message, e.g. "matplotlib is missing", is on stderr already).
void run_python_script(const std::string& script, const std::vector<std::string>& args);

}  // namespace qkv

// Reading a launcher's description of the job from the environment: see launch.h.
#include "dist/launch.h"

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <regex>

#include <fmt/format.h>

#include "base/error.h"

namespace qkv::dist {
namespace {

std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

// The variable as an integer in [lo, hi]; ConfigError naming it otherwise.
int env_int(const char* name, const std::string& text, long lo, long hi) {
  errno = 0;
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str() || *end != '\0' || value < lo || value > hi)
    throw ConfigError(fmt::format("environment: {}={} is not an integer in [{}, {}]", name, text, lo, hi));
  return static_cast<int>(value);
}

int required_int(const char* name, long lo, long hi, const char* needed_by) {
  const auto text = env(name);
  if (!text) throw ConfigError(fmt::format("environment: {} is set but {} is not", needed_by, name));
  return env_int(name, *text, lo, hi);
}

// Slurm's per-node task counts: "4", "2(x3)" or "2(x3),1" (this node's is the first group's when all
// nodes run the same count, which is the only layout qkv's thread plan needs).
int slurm_tasks_per_node(const std::string& text) {
  static const std::regex group(R"(^(\d+)(\(x\d+\))?(,.*)?$)");
  std::smatch m;
  if (!std::regex_match(text, m, group))
    throw ConfigError(fmt::format("environment: SLURM_TASKS_PER_NODE={} is not a task count", text));
  return env_int("SLURM_TASKS_PER_NODE", m[1].str(), 1, 1 << 20);
}

void read_master(LaunchInfo& info, bool required) {
  const auto addr = env("MASTER_ADDR");
  const auto port = env("MASTER_PORT");
  if (required && (!addr || !port))
    throw ConfigError(fmt::format(
        "environment: a {}-process job needs MASTER_ADDR and MASTER_PORT (the address and a free port of "
        "rank 0's machine; a Slurm batch script exports them)",
        info.world_size));
  if (addr) info.master_addr = *addr;
  if (port) info.master_port = env_int("MASTER_PORT", *port, 1, 65535);
}

}  // namespace

LaunchInfo LaunchInfo::from_environment() {
  LaunchInfo info;
  if (const auto rank = env("RANK")) {
    info.launcher = env("TORCHELASTIC_RUN_ID") ? "torchrun" : "env";
    info.world_size = required_int("WORLD_SIZE", 1, 1 << 20, "RANK");
    info.rank = env_int("RANK", *rank, 0, info.world_size - 1);
    info.local_rank = env("LOCAL_RANK") ? required_int("LOCAL_RANK", 0, 1 << 20, "RANK") : info.rank;
    info.local_world_size =
        env("LOCAL_WORLD_SIZE") ? required_int("LOCAL_WORLD_SIZE", 1, 1 << 20, "RANK") : info.world_size;
    info.agent_store = env("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
    if (const auto restarts = env("TORCHELASTIC_RESTART_COUNT"))
      info.restart_count = env_int("TORCHELASTIC_RESTART_COUNT", *restarts, 0, 1 << 20);
  } else if (const auto procid = env("SLURM_PROCID")) {
    info.launcher = "slurm";
    info.world_size = required_int("SLURM_NTASKS", 1, 1 << 20, "SLURM_PROCID");
    info.rank = env_int("SLURM_PROCID", *procid, 0, info.world_size - 1);
    info.local_rank = env("SLURM_LOCALID") ? required_int("SLURM_LOCALID", 0, 1 << 20, "SLURM_PROCID") : 0;
    if (const auto per_node = env("SLURM_NTASKS_PER_NODE"))
      info.local_world_size = env_int("SLURM_NTASKS_PER_NODE", *per_node, 1, 1 << 20);
    else if (const auto tasks = env("SLURM_TASKS_PER_NODE"))
      info.local_world_size = slurm_tasks_per_node(*tasks);
  } else {
    return info;
  }
  if (info.local_rank >= info.local_world_size)
    throw ConfigError(fmt::format("environment: the local rank {} is not below the local world size {}",
                                  info.local_rank, info.local_world_size));
  read_master(info, info.world_size > 1);
  return info;
}

}  // namespace qkv::dist

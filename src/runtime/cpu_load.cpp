// The cores a process may use and the ones other processes leave idle: see threads.h. Read from the
// kernel's accounting: the affinity mask, the cgroup CPU quota, and per-CPU times in /proc/stat.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "runtime/threads.h"

namespace qkv {
namespace {

// The CPUs in this process's affinity mask.
std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
      if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

// A container's CPU quota in whole cores (at least 1), or 0 without one.
int quota_cores() {
  double quota = -1, period = 0;
  std::ifstream v2("/sys/fs/cgroup/cpu.max");  // "max 100000" or "150000 100000"
  std::string first;
  if (v2 >> first >> period) {
    if (first == "max") return 0;
    quota = std::stod(first);
  } else {
    std::ifstream q("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), p("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
    if (!(q >> quota) || !(p >> period)) return 0;
  }
  if (quota <= 0 || period <= 0) return 0;
  return std::max(1, static_cast<int>(std::floor(quota / period)));
}

// Per-CPU times from /proc/stat: "cpuN user nice system idle iowait irq softirq steal ...", in ticks.
struct CpuTimes {
  double busy = 0;   // user, system, irq, softirq, steal: tasks at normal priority (and the kernel)
  double total = 0;  // everything, nice and idle included
};

std::map<int, CpuTimes> read_proc_stat() {
  std::map<int, CpuTimes> times;
  std::ifstream in("/proc/stat");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("cpu", 0) != 0 || line.size() < 4 || line[3] == ' ') continue;  // "cpu " is the total
    std::istringstream fields(line.substr(3));
    int cpu = 0;
    double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    if (!(fields >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq)) continue;
    fields >> steal;  // absent on old kernels
    times[cpu] = {user + system + irq + softirq + steal,
                  user + nice + system + idle + iowait + irq + softirq + steal};
  }
  return times;
}

}  // namespace

int available_cores() {
  const auto cpus = allowed_cpus();
  int cores = cpus.empty() ? static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))
                           : static_cast<int>(cpus.size());
  if (const int quota = quota_cores(); quota > 0) cores = std::min(cores, quota);
  return cores;
}

int idle_cores(const std::vector<CpuBusy>& busy, const std::vector<int>& allowed) {
  double others = 0;
  for (const auto& b : busy)
    if (std::find(allowed.begin(), allowed.end(), b.cpu) != allowed.end())
      others += std::clamp(b.busy, 0.0, 1.0);
  const int idle = static_cast<int>(allowed.size()) - static_cast<int>(std::lround(others));
  return std::max(1, idle);
}

int idle_cores_now(int sample_ms) {
  const int cores = available_cores();
  const auto cpus = allowed_cpus();
  if (cores <= 1 || cpus.empty()) return cores;
  const auto before = read_proc_stat();
  std::this_thread::sleep_for(std::chrono::milliseconds(sample_ms));
  const auto after = read_proc_stat();
  std::vector<CpuBusy> busy;
  for (const auto& [cpu, end] : after) {
    const auto start = before.find(cpu);
    if (start == before.end() || end.total <= start->second.total) continue;
    busy.push_back({cpu, (end.busy - start->second.busy) / (end.total - start->second.total)});
  }
  if (busy.empty()) return cores;
  return std::min(cores, idle_cores(busy, cpus));
}

int default_threads() {
  static const int threads = idle_cores_now();  // once: the load when the program started
  return threads;
}

}  // namespace qkv

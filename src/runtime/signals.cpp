// Signal handling for graceful interruption: see signals.h. The handler only touches a lock-free
// atomic, which is all a signal handler may safely do.
#include "runtime/signals.h"

#include <atomic>
#include <csignal>
#include <mutex>

#include <fmt/format.h>

namespace qkv {
namespace {

std::atomic<int> g_signal{0};
std::mutex g_install;         // serialises installing and restoring the handlers
std::atomic<int> g_depth{0};  // guards alive
struct sigaction g_previous_int;
struct sigaction g_previous_term;

extern "C" void on_stop_signal(int signal_number) {
  int expected = 0;
  if (!g_signal.compare_exchange_strong(expected, signal_number)) {
    std::signal(signal_number, SIG_DFL);  // a second signal: stop now
    std::raise(signal_number);
  }
}

}  // namespace

StopOnSignal::StopOnSignal() {
  const std::lock_guard<std::mutex> lock(g_install);
  if (g_depth++ > 0) return;
  g_signal.store(0);
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &g_previous_int);
  sigaction(SIGTERM, &action, &g_previous_term);
}

StopOnSignal::~StopOnSignal() {
  const std::lock_guard<std::mutex> lock(g_install);
  if (--g_depth > 0) return;
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
  g_signal.store(0);  // a request lives as long as the guards
}

bool StopOnSignal::requested() {
  return g_depth.load() > 0 && g_signal.load() != 0;
}

int StopOnSignal::signal_number() {
  return g_signal.load();
}

const char* StopOnSignal::signal_name() {
  switch (g_signal.load()) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "none";
  }
}

void StopOnSignal::request(int signal_number) {
  g_signal.store(signal_number);
}

void StopOnSignal::check(const std::string& during) {
  if (requested()) throw StopRequested(fmt::format("{} received during {}", signal_name(), during));
}

}  // namespace qkv

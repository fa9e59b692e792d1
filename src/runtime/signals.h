// Graceful interruption. While a StopOnSignal is alive, the first SIGINT (Ctrl-C) or SIGTERM only sets
// a flag that the program polls at safe points (the trainer between steps, then it saves a checkpoint
// and exits cleanly); a second one restores the default action and re-raises, for a user who does not
// want to wait.
//
// Install it as early as possible (`qkv train` does before its set-up), so that a signal that arrives
// while data and model are being prepared is a clean stop too. Guards nest: an inner one shares the
// outer one's flag, and only the outermost installs and restores the handlers. Handlers are installed
// with SA_RESTART, so a signal does not make an interrupted read or write fail.
#pragma once

#include <stdexcept>
#include <string>

namespace qkv {

class StopOnSignal {
 public:
  StopOnSignal();   // the outermost guard installs the handlers
  ~StopOnSignal();  // the outermost guard restores the previous handlers and clears the flag
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;

  // True once a signal has arrived (or request() was called) while a guard is alive.
  static bool requested();
  // The signal that arrived (SIGINT, SIGTERM) or 0.
  static int signal_number();
  // "SIGINT" / "SIGTERM" / "none".
  static const char* signal_name();
  // Sets the flag as a signal would (for tests and for stopping from code).
  static void request(int signal_number);
  // Throws StopRequested naming `during` when a stop has been requested.
  static void check(const std::string& during);
};

// A stop requested before there was anything to save (during set-up).
struct StopRequested : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace qkv

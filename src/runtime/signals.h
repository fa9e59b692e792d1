// Graceful interruption: while a StopOnSignal is alive, the first SIGINT (Ctrl-C) or SIGTERM only sets
// a flag that the training loop polls between steps (it then saves a checkpoint and exits cleanly); a
// second one restores the default action and re-raises, for a user who does not want to wait.
#pragma once

namespace qkv {

class StopOnSignal {
 public:
  StopOnSignal();   // installs the handlers
  ~StopOnSignal();  // restores the previous handlers
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;

  // True once a signal has arrived.
  bool requested() const;
  // The signal that arrived (SIGINT, SIGTERM) or 0.
  int signal_number() const;
  // "SIGINT" / "SIGTERM" / "none".
  const char* signal_name() const;
  // Sets the flag as a signal would (for tests and for stopping from code).
  static void request(int signal_number);
};

}  // namespace qkv

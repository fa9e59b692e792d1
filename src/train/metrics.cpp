// Training reports: see metrics.h.
#include "train/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

namespace qkv {

MetricsLog::MetricsLog(const std::string& path) : path_(path), out_(path, std::ios::app) {
  if (!out_) throw std::runtime_error(fmt::format("{}: cannot open for writing", path));
}

void MetricsLog::write(const nlohmann::json& record) {
  if (!out_.is_open()) return;
  errno = 0;
  out_ << record.dump() << '\n';
  out_.flush();
  // The stream keeps no reason; the failed write(2) left it in errno.
  if (!out_)
    throw std::runtime_error(
        fmt::format("{}: write failed ({})", path_, errno != 0 ? std::strerror(errno) : "disk full?"));
}

Console::Console(std::ostream& out, bool live) : out_(out), live_(live) {}

void Console::clear_status() {
  if (status_shown_) out_ << "\r\033[K";
  status_shown_ = false;
}

void Console::line(const std::string& text) {
  clear_status();
  out_ << text << '\n' << std::flush;
}

void Console::status(const std::string& text) {
  if (!live_) return;
  const double now =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  if (now - last_status_ < 0.25) return;
  last_status_ = now;
  clear_status();
  out_ << text << std::flush;
  status_shown_ = true;
}

bool stdout_is_terminal() {
  return ::isatty(STDOUT_FILENO) == 1;
}

double perplexity(double nll_per_token) {
  return std::exp(std::min(nll_per_token, 100.0));
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

std::string format_progress(int64_t step, int64_t total, const IntervalStats& stats, double lr,
                            double eta_seconds) {
  const int width = static_cast<int>(std::to_string(total).size());
  return fmt::format(
      "[train] step {:>{}}/{} | loss {:.3f} | nll {:.3f} | ppl {:7.2f} | lr {:.2e} | {:.0f} tok/s | ETA {}",
      step, width, total, stats.loss(), stats.nll(), perplexity(stats.nll()), lr, stats.tokens_per_second(),
      format_duration(eta_seconds));
}

}  // namespace qkv

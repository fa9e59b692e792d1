// What training reports: metrics.jsonl (one JSON object per logged step and per validation, flushed
// as written so that a plot or `tail -f` sees it at once) and the console's fixed-format progress line.
#pragma once

#include <cstdint>
#include <fstream>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

namespace qkv {

// Appends JSON records, one per line. A resumed run appends to the same file.
class MetricsLog {
 public:
  MetricsLog() = default;
  explicit MetricsLog(const std::string& path);  // throws std::runtime_error if it cannot open
  void write(const nlohmann::json& record);
  bool is_open() const { return out_.is_open(); }

 private:
  std::string path_;
  std::ofstream out_;
};

// Training statistics over one log interval.
struct IntervalStats {
  double loss_sum = 0.0;  // smoothed loss, summed over target tokens
  double nll_sum = 0.0;   // unsmoothed NLL, summed over target tokens
  int64_t tokens = 0;     // non-padding target tokens
  int64_t sentences = 0;
  int64_t steps = 0;     // updates
  double seconds = 0.0;  // wall time spent
  void add(double loss, double nll, int64_t n_tokens, int64_t n_sentences) {
    loss_sum += loss, nll_sum += nll, tokens += n_tokens, sentences += n_sentences, ++steps;
  }
  double loss() const { return tokens > 0 ? loss_sum / static_cast<double>(tokens) : 0.0; }
  double nll() const { return tokens > 0 ? nll_sum / static_cast<double>(tokens) : 0.0; }
  double tokens_per_second() const { return seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0; }
  double tokens_per_update() const {
    return steps > 0 ? static_cast<double>(tokens) / static_cast<double>(steps) : 0.0;
  }
};

// The console: whole lines, plus (on a terminal) one status line that is redrawn in place between them.
class Console {
 public:
  Console(std::ostream& out, bool live);
  void line(const std::string& text);    // printed and kept
  void status(const std::string& text);  // redrawn in place; ignored unless live (at most ~4 per second)
  std::ostream& stream() { return out_; }

 private:
  void clear_status();
  std::ostream& out_;
  bool live_;
  bool status_shown_ = false;
  double last_status_ = -1.0;
};

// True when stdout is a terminal (live progress makes sense).
bool stdout_is_terminal();

// exp(nll), capped so that a diverged run prints a number rather than inf.
double perplexity(double nll_per_token);

// "1h02m", "4m05s", "12s".
std::string format_duration(double seconds);

// "[train] step   300/4000 | loss 3.214 | nll 2.871 | ppl  17.66 | lr 4.19e-04 | 10342 tok/s | ETA 5m10s"
std::string format_progress(int64_t step, int64_t total, const IntervalStats& stats, double lr,
                            double eta_seconds);

}  // namespace qkv

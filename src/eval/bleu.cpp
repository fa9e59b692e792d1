// Corpus BLEU, sacreBLEU-compatible (see bleu.h). The 13a tokenizer below is written as the four
// regular-expression passes of sacreBLEU's implementation, each a left-to-right scan that replaces
// non-overlapping matches, which is what Python's re.sub does.
#include "eval/bleu.h"

#include <cmath>
#include <stdexcept>
#include <unordered_map>

#include <fmt/format.h>

#include "data/utf8.h"

namespace qkv {

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  size_t start = 0, hit;
  while ((hit = s.find(from, start)) != std::string::npos) {
    out.append(s, start, hit - start);
    out.append(to);
    start = hit + from.size();
  }
  out.append(s, start, std::string::npos);
  s = std::move(out);
}

// Pass 1, ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 ": ASCII symbols and punctuation, except the
// apostrophe, the comma, the dash and the period, become separate tokens.
bool is_13a_symbol(char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
         (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

std::string split_symbols(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (is_13a_symbol(c)) {
      out += ' ';
      out += c;
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

// Applies a two-character pattern (first, second) -> replacement, scanning left to right over
// non-overlapping matches. Bytes stand in for code points safely: every pattern has an ASCII
// character on the side that a multi-byte character could touch.
template <typename Match, typename Emit>
std::string scan_pairs(const std::string& s, Match match, Emit emit) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && match(s[i], s[i + 1])) {
      emit(out, s[i], s[i + 1]);
      i += 2;
    } else {
      out += s[i++];
    }
  }
  return out;
}

std::vector<std::string> tokens_13a(std::string_view line) {
  return utf8::split_python(tokenize_13a(utf8::rstrip_python(line)));
}

// Counts of all n-grams, n = 1..4, keyed by the n tokens joined with single spaces.
using NgramCounts = std::unordered_map<std::string, int64_t>;

NgramCounts count_ngrams(const std::vector<std::string>& tokens) {
  NgramCounts counts;
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string key = tokens[i];
    for (size_t n = 1; n <= 4 && i + n <= tokens.size(); ++n) {
      if (n > 1) key += ' ' + tokens[i + n - 1];
      ++counts[key];
    }
  }
  return counts;
}

size_t order_of(const std::string& key) {
  size_t n = 1;
  for (const char c : key) n += c == ' ';
  return n;
}

}  // namespace

std::string tokenize_13a(std::string_view line) {
  // Language-independent part: mteval's skipped-segment marker, line joins and XML entities.
  std::string s(line);
  replace_all(s, "<skipped>", "");
  replace_all(s, "-\n", "");
  replace_all(s, "\n", " ");
  replace_all(s, "&quot;", "\"");
  replace_all(s, "&amp;", "&");
  replace_all(s, "&lt;", "<");
  replace_all(s, "&gt;", ">");
  s = split_symbols(" " + s + " ");
  // Periods and commas unless preceded by a digit: ([^0-9])([\.,]) -> "\1 \2 ".
  s = scan_pairs(
      s, [](char a, char b) { return !is_digit(a) && (b == '.' || b == ','); },
      [](std::string& out, char a, char b) {
        out += {a, ' ', b, ' '};
      });
  // Periods and commas unless followed by a digit: ([\.,])([^0-9]) -> " \1 \2".
  s = scan_pairs(
      s, [](char a, char b) { return (a == '.' || a == ',') && !is_digit(b); },
      [](std::string& out, char a, char b) {
        out += {' ', a, ' ', b};
      });
  // Dashes after a digit: ([0-9])(-) -> "\1 \2 ".
  s = scan_pairs(
      s, [](char a, char b) { return is_digit(a) && b == '-'; },
      [](std::string& out, char a, char b) {
        out += {a, ' ', b, ' '};
      });
  std::string joined;
  for (const auto& token : utf8::split_python(s)) {
    if (!joined.empty()) joined += ' ';
    joined += token;
  }
  return joined;
}

BleuStats& BleuStats::operator+=(const BleuStats& other) {
  for (size_t n = 0; n < 4; ++n) {
    matches[n] += other.matches[n];
    totals[n] += other.totals[n];
  }
  hyp_len += other.hyp_len;
  ref_len += other.ref_len;
  return *this;
}

BleuStats sentence_stats(std::string_view hyp, std::string_view ref) {
  const std::vector<std::string> hyp_tokens = tokens_13a(hyp);
  const std::vector<std::string> ref_tokens = tokens_13a(ref);
  const NgramCounts ref_counts = count_ngrams(ref_tokens);
  BleuStats stats;
  stats.hyp_len = static_cast<int64_t>(hyp_tokens.size());
  stats.ref_len = static_cast<int64_t>(ref_tokens.size());
  for (const auto& [ngram, count] : count_ngrams(hyp_tokens)) {
    const size_t n = order_of(ngram) - 1;
    stats.totals[n] += count;
    const auto it = ref_counts.find(ngram);
    if (it != ref_counts.end()) stats.matches[n] += std::min(count, it->second);
  }
  return stats;
}

BleuScore bleu_from_stats(const BleuStats& stats) {
  BleuScore result;
  result.hyp_len = stats.hyp_len;
  result.ref_len = stats.ref_len;
  result.ratio = stats.ref_len > 0 ? static_cast<double>(stats.hyp_len) / stats.ref_len : 0.0;
  if (stats.hyp_len < stats.ref_len) {
    result.bp = stats.hyp_len > 0 ? std::exp(1.0 - static_cast<double>(stats.ref_len) / stats.hyp_len) : 0.0;
  } else {
    result.bp = 1.0;
  }
  bool any_match = false;
  for (const int64_t m : stats.matches) any_match = any_match || m > 0;
  if (!any_match) return result;  // score and precisions stay 0

  double smooth = 1.0;  // 'exp' smoothing: 2^k for the k-th order without a match
  for (size_t n = 0; n < 4; ++n) {
    if (stats.totals[n] == 0) break;  // no n-grams of this order: its precision stays 0
    if (stats.matches[n] == 0) {
      smooth *= 2.0;
      result.precisions[n] = 100.0 / (smooth * static_cast<double>(stats.totals[n]));
    } else {
      result.precisions[n] =
          100.0 * static_cast<double>(stats.matches[n]) / static_cast<double>(stats.totals[n]);
    }
  }
  double log_sum = 0.0;
  for (const double p : result.precisions) log_sum += p == 0.0 ? -9999999999.0 : std::log(p);
  result.score = result.bp * std::exp(log_sum / 4.0);
  return result;
}

BleuScore corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::string>& refs) {
  if (hyps.size() != refs.size()) {
    throw std::invalid_argument(fmt::format(
        "BLEU needs one reference per hypothesis: {} hypotheses, {} references", hyps.size(), refs.size()));
  }
  BleuStats stats;
  for (size_t i = 0; i < hyps.size(); ++i) stats += sentence_stats(hyps[i], refs[i]);
  return bleu_from_stats(stats);
}

std::string BleuScore::format() const {
  return fmt::format(
      "BLEU = {:.2f} {:.1f}/{:.1f}/{:.1f}/{:.1f} (BP = {:.3f} ratio = {:.3f} hyp_len = {} ref_len = {})",
      score, precisions[0], precisions[1], precisions[2], precisions[3], bp, ratio, hyp_len, ref_len);
}

}  // namespace qkv

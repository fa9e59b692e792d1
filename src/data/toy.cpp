// The toy translation corpus and its dictionary baseline (see toy.h).
#include "data/toy.h"

#include <unordered_set>

#include <fmt/format.h>

#include "base/error.h"
#include "data/utf8.h"

namespace qkv {

namespace {

std::string join(const std::vector<std::string>& words) {
  std::string line;
  for (const auto& w : words) {
    if (!line.empty()) line += ' ';
    line += w;
  }
  return line;
}

}  // namespace

ToyCorpus generate_toy_corpus(const ToyOptions& options) {
  if (options.train < 0 || options.dev < 0 || options.test < 0) {
    throw ConfigError(fmt::format("toy corpus sizes must not be negative (train {}, dev {}, test {})",
                                  options.train, options.dev, options.test));
  }
  toy::ToyGenerator generator(options.seed);
  ToyCorpus corpus;
  std::unordered_set<std::string> seen;  // source sentences of the splits drawn so far
  for (int64_t i = 0; i < options.train; ++i) {
    corpus.train.push_back(generator.sample());
    seen.insert(join(corpus.train.back().src));
  }
  // Held-out splits: only sentences not seen before, so dev and test measure generalisation.
  const auto draw_unseen = [&](int64_t n, std::vector<toy::ToyPair>& out) {
    while (static_cast<int64_t>(out.size()) < n) {
      toy::ToyPair pair = generator.sample();
      if (seen.insert(join(pair.src)).second) out.push_back(std::move(pair));
    }
  };
  draw_unseen(options.dev, corpus.dev);
  draw_unseen(options.test, corpus.test);
  return corpus;
}

SplitText to_text(const std::vector<toy::ToyPair>& pairs) {
  SplitText text;
  for (const auto& pair : pairs) {
    text.src.push_back(join(pair.src));
    text.tgt.push_back(join(pair.tgt));
  }
  return text;
}

void write_toy_corpus(const CorpusLayout& layout, const ToyOptions& options) {
  const ToyCorpus corpus = generate_toy_corpus(options);
  write_split(layout.split(layout.train_prefix), to_text(corpus.train));
  write_split(layout.split(layout.dev_prefix), to_text(corpus.dev));
  write_split(layout.split(layout.test_prefix), to_text(corpus.test));
}

DictionaryBaseline::DictionaryBaseline(const std::vector<toy::ToyPair>& train) {
  // counts[source word][target word] over all alignment links; "" counts the times it had none.
  std::map<std::string, std::map<std::string, int64_t>> counts;
  for (const auto& pair : train) {
    std::vector<bool> linked(pair.src.size(), false);
    for (size_t j = 0; j < pair.tgt.size(); ++j) {
      const int a = pair.align[j];
      if (a < 0) continue;
      ++counts[pair.src[static_cast<size_t>(a)]][pair.tgt[j]];
      linked[static_cast<size_t>(a)] = true;
    }
    for (size_t i = 0; i < pair.src.size(); ++i) {
      if (!linked[i]) ++counts[pair.src[i]][""];
    }
  }
  for (const auto& [word, translations] : counts) {
    const std::pair<const std::string, int64_t>* best = nullptr;
    for (const auto& entry : translations) {  // ties go to the first in byte order
      if (best == nullptr || entry.second > best->second) best = &entry;
    }
    dictionary_[word] = best->first;
  }
}

std::vector<std::string> DictionaryBaseline::translate(const std::vector<std::string>& src) const {
  std::vector<std::string> out;
  for (const auto& word : src) {
    const auto it = dictionary_.find(word);
    if (it == dictionary_.end()) {
      out.push_back(word);  // never seen in training: copied, as a dictionary lookup would leave it
    } else if (!it->second.empty()) {
      out.push_back(it->second);
    }
  }
  return out;
}

std::vector<std::string> DictionaryBaseline::translate_lines(
    const std::vector<std::string>& src_lines) const {
  std::vector<std::string> out;
  for (const auto& line : src_lines) out.push_back(join(translate(utf8::split_words(line))));
  return out;
}

}  // namespace qkv

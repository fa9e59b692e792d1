// qkv bleu --ref R --hyp H: corpus BLEU of detokenized hypotheses against one reference per line,
// computed and printed as sacreBLEU does by default (13a tokenization, 'exp' smoothing), e.g.
//   BLEU = 34.21 65.3/40.1/27.5/19.2 (BP = 1.000 ratio = 1.012 hyp_len = 1234 ref_len = 1219)
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "base/error.h"
#include "cli.h"
#include "data/corpus.h"
#include "eval/bleu.h"

namespace {

struct BleuArgs {
  std::string ref;
  std::string hyp;
};

void run_bleu(const BleuArgs& args) {
  const std::vector<std::string> refs = qkv::read_lines(args.ref);
  const std::vector<std::string> hyps = qkv::read_lines(args.hyp);
  if (refs.empty()) throw qkv::DataError(fmt::format("{}: no reference lines", args.ref));
  if (hyps.size() != refs.size()) {
    throw qkv::DataError(
        fmt::format("{} has {} lines but {} has {}: BLEU needs one hypothesis per reference line", args.hyp,
                    hyps.size(), args.ref, refs.size()));
  }
  std::cout << qkv::corpus_bleu(hyps, refs).format() << "\n";
}

void setup_bleu(CLI::App& app) {
  auto args = std::make_shared<BleuArgs>();
  auto* cmd = app.add_subcommand("bleu", "Corpus BLEU as sacreBLEU computes it (13a tokenization)");
  cmd->add_option("--ref", args->ref, "Reference file, one detokenized sentence per line")->required();
  cmd->add_option("--hyp", args->hyp, "Hypothesis file, line by line with the reference")->required();
  cmd->callback([args] { run_bleu(*args); });
}

qkv::cli::RegisterCommand reg{"bleu", 50, setup_bleu};

}  // namespace

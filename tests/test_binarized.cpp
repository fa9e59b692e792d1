// The binarized corpus: text -> ids -> .bin -> memory map gives back exactly the ids the codecs
// produce, for both token widths; damaged, stale or mismatched files are refused with their path.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/error.h"
#include "base/special_tokens.h"
#include "data/binarize.h"
#include "data/binarized.h"
#include "data/codec.h"
#include "data/dataset.h"
#include "data/text_clean.h"
#include "data/utf8.h"
#include "support.h"
#include "support_data.h"

namespace fs = std::filesystem;
using namespace qkv;
using qkv::test::build_word_vocab;
using qkv::test::TempDir;

namespace {

// `count` lines of words w0..w{types-1}, 0 to 12 words each (so some lines are blank).
std::vector<std::string> random_lines(int count, int types, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::string> lines;
  for (int i = 0; i < count; ++i) {
    std::string line;
    for (int k = static_cast<int>(rng() % 13); k > 0; --k)
      line += fmt::format("{}w{}", line.empty() ? "" : " ", rng() % types);
    lines.push_back(line);
  }
  return lines;
}

struct Fixture {
  TempDir dir;
  SplitPaths text;
  CodecPair codecs;
  std::vector<std::string> src, tgt;

  explicit Fixture(int pairs = 300, int types = 50) {
    src = random_lines(pairs, types, 1);
    tgt = random_lines(pairs, types, 2);
    text = split_paths(dir.path.string(), "train", "de", "en");
    write_lines(text.src, src);
    write_lines(text.tgt, tgt);
    codecs = make_word_codecs(build_word_vocab({text.src, text.tgt}));
  }
  std::string bin() const { return binarized_path(dir.path.string(), "train", "de", "en"); }
};

void expect_same_ids(const BinarizedCorpus& corpus, const Fixture& f) {
  ASSERT_EQ(corpus.size(), static_cast<int64_t>(f.src.size()));
  for (int64_t i = 0; i < corpus.size(); ++i) {
    EXPECT_EQ(corpus.src(i).to_vector(), f.codecs.src->encode(f.src[i])) << "pair " << i;
    EXPECT_EQ(corpus.tgt(i).to_vector(), f.codecs.tgt->encode(f.tgt[i])) << "pair " << i;
    EXPECT_EQ(corpus.src_length(i), corpus.src(i).size());
    EXPECT_EQ(corpus.tgt_length(i), corpus.tgt(i).size());
  }
}

TEST(Binarized, RoundTripKeepsEveryPairInOrder) {
  Fixture f;
  const BinarizeReport report = binarize_split(f.text, f.bin(), *f.codecs.src, *f.codecs.tgt);
  EXPECT_EQ(report.pairs, 300);
  EXPECT_GT(report.empty_pairs, 0);  // blank lines are kept, aligned with the text
  EXPECT_EQ(report.src_unknown, 0);
  EXPECT_FALSE(fs::exists(f.bin() + ".tmp"));
  const BinarizedCorpus corpus(f.bin());
  EXPECT_EQ(corpus.header().token_bytes, 2u);
  EXPECT_EQ(static_cast<int64_t>(corpus.header().tokens), report.src_tokens + report.tgt_tokens);
  EXPECT_EQ(corpus.file_bytes(), report.file_bytes);
  expect_same_ids(corpus, f);
  EXPECT_NO_THROW(corpus.check_codecs(*f.codecs.src, *f.codecs.tgt));
  EXPECT_NO_THROW(corpus.check_text(f.text));
}

TEST(Binarized, VocabulariesOver65536UseFourByteIds) {
  Fixture f(400, 70000);
  std::vector<std::string> every_word;
  for (int i = 0; i < 70000; ++i) every_word.push_back(fmt::format("w{}", i));
  TokenCounts counts;
  counts.add(every_word);
  const WordCodec wide(Vocab::build(counts, 1));
  ASSERT_GT(wide.size(), 65536);  // past what two-byte ids can hold: the point of the test
  binarize_split(f.text, f.bin(), wide, wide);
  const BinarizedCorpus corpus(f.bin());
  EXPECT_EQ(corpus.header().token_bytes, 4u);
  int64_t beyond_uint16 = 0;
  for (int64_t i = 0; i < corpus.size(); ++i) {
    const auto ids = corpus.src(i).to_vector();
    ASSERT_EQ(ids, wide.encode(f.src[i]));
    ASSERT_EQ(corpus.tgt(i).to_vector(), wide.encode(f.tgt[i]));
    beyond_uint16 += std::count_if(ids.begin(), ids.end(), [](int64_t id) { return id > 65535; });
  }
  EXPECT_GT(beyond_uint16, 0);  // the wide path was exercised
}

TEST(Binarized, TrainingExamplesDropEmptyAndLongPairsAsTheTextPathDoes) {
  Fixture f(300);
  binarize_split(f.text, f.bin(), *f.codecs.src, *f.codecs.tgt);
  FilterStats stats;
  const Pairs kept(std::make_shared<const BinarizedPairs>(BinarizedCorpus(f.bin()), 8, stats));
  std::vector<Example> expected;
  int64_t empty = 0, too_long = 0;
  for (size_t i = 0; i < f.src.size(); ++i) {
    const auto src = f.codecs.src->encode(f.src[i]), tgt = f.codecs.tgt->encode(f.tgt[i]);
    if (src.empty() || tgt.empty()) {
      ++empty;
    } else if (src.size() > 8 || tgt.size() > 8) {
      ++too_long;
    } else {
      expected.push_back({src, tgt});
    }
  }
  ASSERT_GT(empty, 0);  // the fixture holds both kinds of pair that must be dropped
  ASSERT_GT(too_long, 0);
  EXPECT_EQ(stats.empty, empty);
  EXPECT_EQ(stats.too_long, too_long);
  EXPECT_EQ(stats.kept, static_cast<int64_t>(expected.size()));
  ASSERT_EQ(kept.size(), expected.size());
  for (size_t i = 0; i < kept.size(); ++i) {
    EXPECT_EQ(kept[i].src, expected[i].src);
    EXPECT_EQ(kept[i].tgt, expected[i].tgt);
  }
}

// Training from the .bin file (the pairs read through the map) serves the very batches that
// training from the text serves (the pairs in memory), epoch after epoch, for the same seed.
TEST(Binarized, TrainingBatchesFromTheFileEqualThoseFromMemory) {
  Fixture f(600);
  binarize_split(f.text, f.bin(), *f.codecs.src, *f.codecs.tgt);
  DataConfig data;
  data.dir = f.dir.path.string();
  data.train_prefix = "train";
  data.src_lang = "de";
  data.tgt_lang = "en";
  data.max_len = 8;
  std::ostringstream log;
  const Split mapped = load_split(data, "train", f.codecs, 255, log);
  EXPECT_NE(dynamic_cast<const BinarizedPairs*>(&mapped.examples.source()), nullptr) << log.str();
  fs::remove(f.bin());
  const Split in_memory = load_split(data, "train", f.codecs, 255, log);
  EXPECT_EQ(dynamic_cast<const BinarizedPairs*>(&in_memory.examples.source()), nullptr);
  ASSERT_EQ(mapped.examples.size(), in_memory.examples.size());
  ASSERT_GT(mapped.examples.size(), 100u);  // enough pairs for batches over three epochs below

  BatchIterator from_file(mapped.examples, 40, 7), from_memory(in_memory.examples, 40, 7);
  ASSERT_EQ(from_file.plan(), from_memory.plan());
  const int64_t draws = 2 * from_file.batches_in_epoch() + 3;  // into the third epoch
  for (int64_t b = 0; b < draws; ++b) {
    const Batch x = from_file.next(), y = from_memory.next();
    ASSERT_EQ(x.indices, y.indices) << "batch " << b;
    EXPECT_TRUE(x.src.equal(y.src)) << "batch " << b;
    EXPECT_TRUE(x.tgt_in.equal(y.tgt_in)) << "batch " << b;
    EXPECT_TRUE(x.tgt_out.equal(y.tgt_out)) << "batch " << b;
    EXPECT_EQ(x.src_tokens, y.src_tokens);
    EXPECT_EQ(x.tgt_tokens, y.tgt_tokens);
  }
  EXPECT_EQ(from_file.position(), from_memory.position());
}

TEST(Binarized, AllExamplesKeepEveryLineAndCutLongSides) {
  Fixture f(100);
  binarize_split(f.text, f.bin(), *f.codecs.src, *f.codecs.tgt);
  const BinarizedCorpus corpus(f.bin());
  const std::vector<Example> examples = all_examples(corpus, 5);
  ASSERT_EQ(examples.size(), f.src.size());
  for (size_t i = 0; i < examples.size(); ++i) {
    auto src = f.codecs.src->encode(f.src[i]);
    if (src.size() > 5) src.resize(5);
    EXPECT_EQ(examples[i].src, src);
    EXPECT_LE(examples[i].tgt.size(), 5u);
  }
}

TEST(Binarized, MovedCorpusStaysReadable) {
  Fixture f(20);
  binarize_split(f.text, f.bin(), *f.codecs.src, *f.codecs.tgt);
  BinarizedCorpus a(f.bin());
  BinarizedCorpus b(std::move(a));
  expect_same_ids(b, f);
}

TEST(Binarized, WriterRefusesIdsOutsideTheVocabularyAndLeavesNoFile) {
  Fixture f(5);
  {
    BinarizedWriter writer(f.bin(), *f.codecs.src, *f.codecs.tgt);
    writer.add({kUnkId + 1}, {kUnkId + 1});
    EXPECT_THROW(writer.add({f.codecs.src->size()}, {4}), std::out_of_range);
    EXPECT_THROW(writer.add({4}, {-1}), std::out_of_range);
  }
  EXPECT_FALSE(fs::exists(f.bin()));
  EXPECT_FALSE(fs::exists(f.bin() + ".tmp"));
}

TEST(Binarized, EmptyCorpusIsValid) {
  Fixture f(0);
  binarize_split(f.text, f.bin(), *f.codecs.src, *f.codecs.tgt);
  EXPECT_EQ(BinarizedCorpus(f.bin()).size(), 0);
}

// Copies the file with `edit` applied to its bytes and expects opening it to fail with `needle`.
void expect_refused(const std::string& path, const std::function<void(std::string&)>& edit,
                    const std::string& needle) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  edit(bytes);
  const std::string damaged = path + ".damaged";
  std::ofstream(damaged, std::ios::binary) << bytes;
  try {
    BinarizedCorpus corpus(damaged);
    ADD_FAILURE() << "accepted a damaged file (" << needle << ")";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(damaged), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Binarized, DamagedFilesAreRefused) {
  Fixture f(50);
  binarize_split(f.text, f.bin(), *f.codecs.src, *f.codecs.tgt);
  expect_refused(
      f.bin(), [](std::string& b) { b[0] = 'X'; }, "magic");
  expect_refused(
      f.bin(), [](std::string& b) { b[8] = 9; }, "version");
  expect_refused(
      f.bin(), [](std::string& b) { b.resize(b.size() - 8); }, "truncated");
  expect_refused(
      f.bin(), [](std::string& b) { b.resize(100); }, "too short");
  expect_refused(
      f.bin(),
      [](std::string& b) {
        const size_t first_offset = b.size() - 8 * (2 * 50 + 1);
        b[first_offset + 8 * 3] = static_cast<char>(0xff);  // off[3] jumps past off[4]
      },
      "offsets decrease");
  EXPECT_THROW(BinarizedCorpus((f.dir.path / "absent.bin").string()), DataError);
}

TEST(Binarized, MismatchedCodecsAndStaleTextAreDetected) {
  Fixture f(100);
  binarize_split(f.text, f.bin(), *f.codecs.src, *f.codecs.tgt);
  const BinarizedCorpus corpus(f.bin());
  TokenCounts counts;
  counts.add(std::vector<std::string>{"other", "words"});
  const WordCodec other(Vocab::build(counts, 1));
  EXPECT_THROW(corpus.check_codecs(other, *f.codecs.tgt), DataError);
  EXPECT_THROW(corpus.check_codecs(*f.codecs.src, other), DataError);

  auto changed = f.tgt;
  changed[0] += " w1";
  write_lines(f.text.tgt, changed);
  EXPECT_THROW(corpus.check_text(f.text), DataError);
  write_lines(f.text.tgt, f.tgt);
  EXPECT_NO_THROW(corpus.check_text(f.text));
  fs::remove(f.text.src);  // text deleted to save space: nothing to compare with
  EXPECT_NO_THROW(corpus.check_text(f.text));
}

TEST(Binarized, PathsFollowTheSplitAndLanguagePair) {
  EXPECT_EQ(binarized_path("data/wmt14", "train", "en", "de"), "data/wmt14/train.en-de.bin");
}

}  // namespace

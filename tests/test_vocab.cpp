// Vocabulary: fixed special ids, deterministic order, min_freq, encode/decode, and a save/load round
// trip whose errors name the file and line.
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/error.h"
#include "base/special_tokens.h"
#include "data/vocab.h"
#include "support.h"

namespace qkv {
namespace {

using test::TempDir;

const std::vector<std::vector<std::string>> kSentences = {
    {"the", "cat", "sat"}, {"the", "dog", "sat"}, {"a", "cat", "ran"}, {"the", "end"}};

std::string load_error(const std::string& path) {
  try {
    Vocab::load(path);
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

TEST(Vocab, SpecialsHaveFixedIds) {
  const Vocab vocab = Vocab::build(kSentences);
  EXPECT_EQ(vocab.id(kPadToken), kPadId);
  EXPECT_EQ(vocab.id(kBosToken), kBosId);
  EXPECT_EQ(vocab.id(kEosToken), kEosId);
  EXPECT_EQ(vocab.id(kUnkToken), kUnkId);
  EXPECT_EQ(vocab.token(kEosId), "</s>");
}

TEST(Vocab, OrdersByFrequencyThenBytes) {
  const Vocab vocab = Vocab::build(kSentences);
  // the ×3; cat, sat ×2; a, dog, end, ran ×1 (ties in byte order).
  const std::vector<std::string> expected = {"the", "cat", "sat", "a", "dog", "end", "ran"};
  ASSERT_EQ(vocab.size(), 4 + static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(vocab.token(4 + static_cast<int64_t>(i)), expected[i]);
}

TEST(Vocab, MinFreqSendsRareWordsToUnk) {
  const Vocab vocab = Vocab::build(kSentences, 2);
  EXPECT_EQ(vocab.size(), 4 + 3);  // the, cat, sat
  EXPECT_EQ(vocab.id("dog"), kUnkId);
  EXPECT_EQ(vocab.id("never-seen"), kUnkId);
  EXPECT_FALSE(vocab.contains("dog"));
}

TEST(Vocab, SharedVocabularyCountsBothSides) {
  TokenCounts counts;
  counts.add(std::vector<std::vector<std::string>>{{"a", "b"}});
  counts.add(std::vector<std::string>{"b", "c"});
  const Vocab vocab = Vocab::build(counts);
  EXPECT_EQ(vocab.token(4), "b");
  EXPECT_TRUE(vocab.contains("a") && vocab.contains("c"));
}

TEST(Vocab, EncodeAndDecode) {
  const Vocab vocab = Vocab::build(kSentences);
  const std::vector<int64_t> ids = vocab.encode("the  cat\tflew");
  EXPECT_EQ(ids, (std::vector<int64_t>{vocab.id("the"), vocab.id("cat"), kUnkId}));
  EXPECT_EQ(vocab.decode(ids), "the cat <unk>");
  // <s> and <pad> are skipped; decoding stops at the first </s>.
  EXPECT_EQ(vocab.decode({kBosId, vocab.id("a"), kPadId, vocab.id("dog"), kEosId, vocab.id("end")}), "a dog");
  EXPECT_THROW(vocab.token(vocab.size()), std::out_of_range);
}

TEST(Vocab, SaveLoadRoundTrip) {
  TempDir dir;
  const Vocab vocab = Vocab::build(kSentences);
  const std::string path = (dir.path / "vocab.txt").string();
  vocab.save(path);
  const Vocab loaded = Vocab::load(path);
  EXPECT_EQ(loaded, vocab);
  EXPECT_EQ(loaded.id("dog"), vocab.id("dog"));
  EXPECT_EQ(loaded.encode("the cat sat"), vocab.encode("the cat sat"));
}

TEST(Vocab, LoadErrorsNameFileAndLine) {
  TempDir dir;
  const std::string missing = (dir.path / "none.txt").string();
  EXPECT_NE(load_error(missing).find(missing + ": cannot open"), std::string::npos);

  const std::string short_file = dir.write("short.txt", "<pad>\n<s>\n");
  EXPECT_NE(load_error(short_file).find("at least the 4 special tokens"), std::string::npos);

  const std::string bad_special = dir.write("special.txt", "<pad>\n<s>\n<unk>\n</s>\n");
  EXPECT_NE(load_error(bad_special).find(bad_special + ":3: expected the special token </s>"),
            std::string::npos);

  const std::string duplicate = dir.write("dup.txt", "<pad>\n<s>\n</s>\n<unk>\ncat\ndog\ncat\n");
  EXPECT_NE(load_error(duplicate).find(duplicate + ":7: duplicate token 'cat' (first at line 5)"),
            std::string::npos);

  const std::string blank = dir.write("blank.txt", "<pad>\n<s>\n</s>\n<unk>\ncat\n\n");
  EXPECT_NE(load_error(blank).find(blank + ":6: '' is not a token"), std::string::npos);

  const std::string spaced = dir.write("spaced.txt", "<pad>\n<s>\n</s>\n<unk>\nice cream\n");
  EXPECT_NE(load_error(spaced).find(spaced + ":5: 'ice cream' is not a token"), std::string::npos);
}

}  // namespace
}  // namespace qkv

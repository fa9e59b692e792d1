// Parallel text reading: every data error of issue #4 §2 names the file (and line); filtering counts
// what it drops. Also the UTF-8 helpers the reader and BLEU rely on.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/error.h"
#include "data/corpus.h"
#include "data/utf8.h"
#include "support.h"

namespace qkv {
namespace {

using test::TempDir;

// The message of the DataError that f throws ("" when it throws none).
template <typename F>
std::string data_error(F f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

TEST(Corpus, ReadsPairsAndSplitsWords) {
  TempDir dir;
  const std::string src = dir.write("train.src", "a b  c\r\nd\te\nf");  // CRLF, tab, no final newline
  const std::string tgt = dir.write("train.tgt", "x\ny z\nw\n");
  const ParallelCorpus corpus = read_parallel(src, tgt);
  ASSERT_EQ(corpus.size(), 3u);
  EXPECT_EQ(corpus.src[0], (Tokens{"a", "b", "c"}));
  EXPECT_EQ(corpus.src[1], (Tokens{"d", "e"}));
  EXPECT_EQ(corpus.src[2], (Tokens{"f"}));
  EXPECT_EQ(corpus.tgt[1], (Tokens{"y", "z"}));
}

TEST(Corpus, MissingFileIsNamed) {
  TempDir dir;
  const std::string tgt = dir.write("train.tgt", "x\n");
  const std::string missing = (dir.path / "train.src").string();
  const std::string message = data_error([&] { read_parallel(missing, tgt); });
  EXPECT_NE(message.find(missing), std::string::npos) << message;
  EXPECT_NE(message.find("cannot open"), std::string::npos) << message;
}

TEST(Corpus, UnequalLineCountsNameBothFiles) {
  TempDir dir;
  const std::string src = dir.write("train.src", "a\nb\nc\n");
  const std::string tgt = dir.write("train.tgt", "x\ny\n");
  const std::string message = data_error([&] { read_parallel(src, tgt); });
  EXPECT_NE(message.find(src + " has 3 lines but " + tgt + " has 2"), std::string::npos) << message;
}

TEST(Corpus, InvalidUtf8NamesFileAndLine) {
  TempDir dir;
  const std::string src = dir.write("train.src", "a\nb\nc\n");
  const std::string tgt = dir.write("train.tgt", "x\ny \xC3\x28 z\nw\n");  // 0xC3 needs a continuation byte
  const std::string message = data_error([&] { read_parallel(src, tgt); });
  EXPECT_NE(message.find(tgt + ":2: invalid UTF-8 at byte 3"), std::string::npos) << message;
}

TEST(Corpus, EmptyCorpusIsAnError) {
  TempDir dir;
  const std::string src = dir.write("train.src", "");
  const std::string tgt = dir.write("train.tgt", "");
  const std::string message = data_error([&] { read_parallel(src, tgt); });
  EXPECT_NE(message.find(src + ": empty corpus"), std::string::npos) << message;
}

TEST(Corpus, DirectoryIsNotAFile) {
  TempDir dir;
  const std::string message = data_error([&] { read_lines(dir.path.string()); });
  EXPECT_NE(message.find("is a directory"), std::string::npos) << message;
}

// read_parallel goes through the same reader as `qkv data binarize` (text_clean.h), so a word
// vocabulary built from the text matches the ids in a binarized file of the same text.
TEST(Corpus, ReadsThroughTheRobustReader) {
  TempDir dir;
  // BOM, "a" U+0001 "b c", lone CR, "d" U+00A0 "e", CRLF, "f" (split where a hex escape would swallow).
  const std::string src =
      dir.write("train.src", std::string("\xEF\xBB\xBF") + "a\x01" + "b c\rd\xC2\xA0" + "e\r\nf\n");
  const std::string tgt = dir.write("train.tgt", "x\ny\nz");
  const ParallelCorpus corpus = read_parallel(src, tgt);
  ASSERT_EQ(corpus.size(), 3u);
  EXPECT_EQ(corpus.src[0], (Tokens{"ab", "c"}));  // BOM dropped, control character removed
  EXPECT_EQ(corpus.src[1], (Tokens{"d", "e"}));   // a lone CR ends a line; U+00A0 is a space
  EXPECT_EQ(corpus.src[2], (Tokens{"f"}));
  EXPECT_EQ(read_lines(src), (std::vector<std::string>{"ab c", "d e", "f"}));
}

TEST(Corpus, BinaryFileIsRefusedWithFileAndLine) {
  TempDir dir;
  const std::string src = dir.write("train.src", std::string("a\nb\0c\n", 6));
  const std::string message = data_error([&] { read_lines(src); });
  EXPECT_NE(message.find(src + ":2: NUL byte"), std::string::npos) << message;
}

TEST(Corpus, ReadsAnOpenStreamAndLeavesItOpen) {
  std::FILE* stream = std::tmpfile();
  ASSERT_NE(stream, nullptr);
  std::fputs("one  two\r\nthree\x7f\n", stream);
  std::rewind(stream);
  EXPECT_EQ(read_lines(stream, "<stdin>"), (std::vector<std::string>{"one two", "three"}));
  EXPECT_EQ(std::fseek(stream, 0, SEEK_SET), 0);  // still open: ours to close
  std::fputs("\xff\n", stream);
  std::rewind(stream);
  const std::string message = data_error([&] { read_lines(stream, "<stdin>"); });
  EXPECT_NE(message.find("<stdin>:1: invalid UTF-8 at byte 1"), std::string::npos) << message;
  std::fclose(stream);
}

TEST(Corpus, FilterDropsLongAndEmptyPairsAndCountsThem) {
  TempDir dir;
  const std::string src = dir.write("a.src", "1 2 3\n1 2 3 4 5 6\n\n1\n1 2\n");
  const std::string tgt = dir.write("a.tgt", "1 2\n1 2\n1\n\n1 2 3 4 5\n");
  ParallelCorpus corpus = read_parallel(src, tgt);
  const FilterStats stats = filter_pairs(corpus, 4);
  EXPECT_EQ(stats.kept, 1);
  EXPECT_EQ(stats.too_long, 2);  // a source of 6 and a target of 5 tokens
  EXPECT_EQ(stats.empty, 2);
  ASSERT_EQ(corpus.size(), 1u);
  EXPECT_EQ(corpus.src[0], (Tokens{"1", "2", "3"}));
  EXPECT_EQ(stats.summary(), "kept 1 of 5 pairs (2 longer than 4 tokens, 2 with an empty side)");
}

TEST(Corpus, WriteThenReadRoundTrip) {
  TempDir dir;
  const SplitPaths paths = split_paths((dir.path / "sub").string(), "dev", "en", "de");
  EXPECT_EQ(paths.src, (dir.path / "sub" / "dev.en").string());
  write_split(paths, {{"the cat", "é ü 中"}, {"die Katze", "x"}});
  EXPECT_EQ(read_lines(paths.src), (std::vector<std::string>{"the cat", "é ü 中"}));
  EXPECT_EQ(read_lines(paths.tgt), (std::vector<std::string>{"die Katze", "x"}));
}

TEST(Utf8, RejectsMalformedSequences) {
  EXPECT_TRUE(utf8::is_valid("plain ascii"));
  EXPECT_TRUE(utf8::is_valid("\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80"));  // é 中 😀
  EXPECT_EQ(utf8::find_invalid("ab\x80"), 2u);                            // stray continuation byte
  EXPECT_EQ(utf8::find_invalid("\xC0\xAF"), 0u);                          // overlong "/"
  EXPECT_EQ(utf8::find_invalid("\xE0\x80\xAF"), 0u);                      // overlong 3-byte form
  EXPECT_EQ(utf8::find_invalid("a\xED\xA0\x80"), 1u);                     // UTF-16 surrogate U+D800
  EXPECT_EQ(utf8::find_invalid("\xF4\x90\x80\x80"), 0u);                  // above U+10FFFF
  EXPECT_EQ(utf8::find_invalid("ok\xE4\xB8"), 2u);                        // truncated at the end
}

TEST(Utf8, PythonWhitespaceRules) {
  EXPECT_EQ(utf8::split_python(" a\u00a0b\u3000c\x1c"
                               "d  "),
            (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(utf8::rstrip_python("a b \u2003\t"), "a b");
  EXPECT_EQ(utf8::split_words("a\u00a0b c"),
            (std::vector<std::string>{"a\u00a0b", "c"}));  // corpus: ASCII only
}

}  // namespace
}  // namespace qkv

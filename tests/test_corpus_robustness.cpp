// Real corpora are messy. Each case of issue #7 is either handled as fairseq-preprocess would (and the
// test says how) or refused with the file and line (text_clean.h states the policy).
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/error.h"
#include "data/binarize.h"
#include "data/binarized.h"
#include "data/codec.h"
#include "data/text_clean.h"
#include "data/utf8.h"
#include "support.h"
#include "support_data.h"

using namespace qkv;
using qkv::test::build_word_vocab;
using qkv::test::TempDir;

namespace {

std::vector<std::string> read_all(const std::string& path, TextStats* stats = nullptr,
                                  TextPolicy policy = {}) {
  LineReader reader(path, policy);
  std::vector<std::string> lines;
  std::string line;
  while (reader.next(line)) lines.push_back(line);
  if (stats != nullptr) *stats = reader.stats();
  return lines;
}

// Expects reading `path` to throw a DataError whose message contains every needle.
void expect_refused(const std::string& path, const std::vector<std::string>& needles,
                    TextPolicy policy = {}) {
  try {
    read_all(path, nullptr, policy);
    ADD_FAILURE() << path << " was accepted";
  } catch (const DataError& e) {
    for (const auto& needle : needles)
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

using Lines = std::vector<std::string>;

TEST(CorpusRobustness, MixedLineEndingsAllEndALine) {
  // As Python's universal newlines (fairseq): LF, CRLF and a lone CR; a last line without one counts.
  TempDir dir;
  TextStats stats;
  EXPECT_EQ(read_all(dir.write("mixed", "unix\nwindows\r\nold mac\rlast"), &stats),
            (Lines{"unix", "windows", "old mac", "last"}));
  EXPECT_EQ(stats.crlf_endings, 1);
  EXPECT_EQ(stats.cr_endings, 1);
  EXPECT_EQ(read_all(dir.write("empty", "")), Lines{});
  EXPECT_EQ(read_all(dir.write("one_newline", "\n")), Lines{""});
}

TEST(CorpusRobustness, CrlfSplitAcrossReadChunksIsOneLineEnd) {
  TempDir dir;
  const std::string first(1024 * 1024 - 1, 'a');  // the "\r" is the last byte of the first 1 MiB chunk
  TextStats stats;
  const auto lines = read_all(dir.write("boundary", first + "\r\nb\n"), &stats);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], first);
  EXPECT_EQ(lines[1], "b");
  EXPECT_EQ(stats.crlf_endings, 1);
}

TEST(CorpusRobustness, ByteOrderMarkIsDropped) {
  // fairseq (utf-8, not utf-8-sig) would glue U+FEFF to the first word; we read as utf-8-sig does.
  TempDir dir;
  TextStats stats;
  EXPECT_EQ(read_all(dir.write("bom", "\xef\xbb\xbfHallo Welt\nzwei\n"), &stats),
            (Lines{"Hallo Welt", "zwei"}));
  EXPECT_TRUE(stats.bom);
  // A BOM left inside by concatenating files is removed too.
  EXPECT_EQ(read_all(dir.write("inner", "eins\n\xef\xbb\xbfzwei\n")), (Lines{"eins", "zwei"}));
}

TEST(CorpusRobustness, BlankLinesAreKeptSoThatLinesStayAligned) {
  // fairseq binarizes a blank line as an empty sentence; the trainer skips pairs with an empty side.
  TempDir dir;
  TextStats stats;
  EXPECT_EQ(read_all(dir.write("blank", "a\n\n   \nb\n"), &stats), (Lines{"a", "", "", "b"}));
  EXPECT_EQ(stats.blank_lines, 2);
}

TEST(CorpusRobustness, WhitespaceIsNormalizedAsPythonSplitDoes) {
  // fairseq's tokenize_line: " ".join(line.split()) over Python's Unicode whitespace.
  TempDir dir;
  EXPECT_EQ(read_all(dir.write("spaces",
                               "  a\tb\x0b\x0c"
                               "c\xc2\xa0"
                               "d\xe2\x80\x83"
                               "e\xe3\x80\x80"
                               "f\x1f"
                               "g  \n")),
            Lines{"a b c d e f g"});
}

TEST(CorpusRobustness, OtherControlCharactersAreRemoved) {
  // As Moses' remove-non-printing-char.perl; fairseq would keep them inside tokens.
  TempDir dir;
  TextStats stats;
  EXPECT_EQ(read_all(dir.write("controls", "be\x01ll\x7f \x1b[0mred\xc2\x85x \xc2\x9fy\n"), &stats),
            Lines{"bell [0mred x y"});
  EXPECT_EQ(stats.controls_removed, 4);  // \x01, \x7f, \x1b, U+009F (U+0085 is whitespace)
}

TEST(CorpusRobustness, NulBytesAndInvalidUtf8AreRefusedWithFileAndLine) {
  TempDir dir;
  const auto nul = dir.write("binary", std::string("ok\nstill ok\nzero\0byte\n", 22));
  expect_refused(nul, {nul + ":3:", "NUL byte"});
  const auto latin1 = dir.write("latin1",
                                "gr\xc3\xbc\xc3\x9f"
                                "e\nStra\xdf"
                                "e\n");
  expect_refused(latin1, {latin1 + ":2:", "invalid UTF-8 at byte 5", "iconv"});
  const auto overlong = dir.write("overlong", "\xc0\xaf\n");
  expect_refused(overlong, {overlong + ":1:", "invalid UTF-8"});
  const auto surrogate = dir.write("surrogate", "ok\n\xed\xa0\x80\n");
  expect_refused(surrogate, {surrogate + ":2:", "invalid UTF-8"});
  const auto truncated = dir.write("truncated", "ok\n\xe2\x82");
  expect_refused(truncated, {truncated + ":2:", "invalid UTF-8"});
}

TEST(CorpusRobustness, VeryLongLinesAreReadWholeUpToTheLimitThenRefused) {
  TempDir dir;
  const std::string long_line(3 * 1024 * 1024, 'x');  // spans several read chunks
  TextPolicy roomy;
  roomy.max_line_bytes = 4 * 1024 * 1024;
  const auto path = dir.write("long", "short\n" + long_line + "\nend\n");
  const auto lines = read_all(path, nullptr, roomy);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1].size(), long_line.size());
  EXPECT_EQ(lines[2], "end");
  expect_refused(path, {path + ":2:", "longer than 1048576 bytes"});  // the default limit: 1 MiB
}

TEST(CorpusRobustness, UnequalLineCountsAreRefusedNamingBothFiles) {
  // fairseq: "Source and target must contain the same number of examples".
  TempDir dir;
  const auto src = dir.write("train.de", "eins\nzwei\ndrei\n");
  const auto tgt = dir.write("train.en", "one\ntwo\n");
  ParallelReader reader(src, tgt);
  std::string s, t;
  try {
    while (reader.next(s, t)) {
    }
    FAIL() << "unequal files were accepted";
  } catch (const DataError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(tgt + " ends after 2 lines"), std::string::npos) << message;
    EXPECT_NE(message.find(src + " has a line 3"), std::string::npos) << message;
  }
}

TEST(CorpusRobustness, MessyTextBinarizesLikeItsCleanForm) {
  // The whole path: a corpus with every handled defect gives the same ids as its clean version.
  TempDir dir;
  const SplitPaths messy{dir.write("m.de",
                                   "\xef\xbb\xbf"
                                   "das  Haus\r\n\r\nein\tBaum\x01\rder\xc2\xa0Hund"),
                         dir.write("m.en", "the house\n\nA tree\nthe dog\n")};
  const SplitPaths clean{dir.write("c.de", "das Haus\n\nein Baum\nder Hund\n"),
                         dir.write("c.en", "the house\n\nA tree\nthe dog\n")};
  const CodecPair codecs = make_word_codecs(build_word_vocab({clean.src, clean.tgt}));
  const auto messy_bin = (dir.path / "m.bin").string(), clean_bin = (dir.path / "c.bin").string();
  const BinarizeReport report = binarize_split(messy, messy_bin, *codecs.src, *codecs.tgt);
  binarize_split(clean, clean_bin, *codecs.src, *codecs.tgt);
  EXPECT_EQ(report.pairs, 4);
  EXPECT_EQ(report.empty_pairs, 1);
  EXPECT_EQ(report.src_unknown, 0);
  EXPECT_TRUE(report.src_text.bom);
  const BinarizedCorpus a(messy_bin), b(clean_bin);
  ASSERT_EQ(a.size(), b.size());
  for (int64_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a.src(i).to_vector(), b.src(i).to_vector()) << "pair " << i;
    EXPECT_EQ(a.tgt(i).to_vector(), b.tgt(i).to_vector()) << "pair " << i;
  }
}

}  // namespace

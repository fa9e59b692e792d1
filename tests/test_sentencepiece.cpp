// SentencePiece through the run-time-loaded shim: training a joint model on generated text, the
// encode/decode round trip, qkv's special-token layout, the errors a user can cause, and a short
// train + translate + evaluate run of the qkv program through the SentencePiece path.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/special_tokens.h"
#include "config/load.h"
#include "data/binarized.h"
#include "data/codec.h"
#include "data/sentencepiece.h"
#include "support.h"

namespace fs = std::filesystem;
using namespace qkv;
using qkv::test::TempDir;

namespace {

// Sentences of a small made-up German/English: enough shared structure for subwords to form.
std::vector<std::string> make_sentences(const std::vector<std::string>& words, int count, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::string> lines;
  for (int i = 0; i < count; ++i) {
    std::string line;
    const int length = 3 + static_cast<int>(rng() % 10);
    for (int k = 0; k < length; ++k) {
      if (k > 0) line += ' ';
      line += words[rng() % words.size()];
    }
    lines.push_back(line + (rng() % 2 ? " ." : " ?"));
  }
  return lines;
}

const std::vector<std::string> kGerman = {"der",     "die",    "das",   "Hund",   "Katze",    "läuft",
                                          "schnell", "über",   "die",   "Straße", "Mädchen",  "spielt",
                                          "Fußball", "grünen", "Wiese", "Männer", "arbeiten", "zusammen"};
const std::vector<std::string> kEnglish = {"the",    "a",      "dog",  "cat",   "runs",     "quickly",
                                           "across", "street", "girl", "plays", "football", "on",
                                           "green",  "meadow", "men",  "work",  "together", "while"};

// One model per test binary: training takes a fraction of a second, but there is no need to repeat it.
class SentencePieceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    german_ = make_sentences(kGerman, 400, 1);
    english_ = make_sentences(kEnglish, 400, 2);
    write_lines(dir_->path / "train.de", german_);
    write_lines(dir_->path / "train.en", english_);
    SpmTrainOptions options;
    options.vocab_size = 160;
    options.threads = 1;
    train_sentencepiece({(dir_->path / "train.de").string(), (dir_->path / "train.en").string()},
                        (dir_->path / "spm").string(), options);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string model_path() { return (dir_->path / "spm.model").string(); }

  static TempDir* dir_;
  static std::vector<std::string> german_, english_;
};
TempDir* SentencePieceTest::dir_ = nullptr;
std::vector<std::string> SentencePieceTest::german_, SentencePieceTest::english_;

TEST_F(SentencePieceTest, TrainsAJointModelWithQkvSpecialIds) {
  EXPECT_TRUE(fs::exists(dir_->path / "spm.vocab"));
  const SentencePiece spm(model_path());
  EXPECT_EQ(spm.size(), 160);
  EXPECT_EQ(spm.id_to_piece(kPadId), kPadToken);
  EXPECT_EQ(spm.id_to_piece(kBosId), kBosToken);
  EXPECT_EQ(spm.id_to_piece(kEosId), kEosToken);
  EXPECT_EQ(spm.id_to_piece(kUnkId), kUnkToken);
  // Joint: words of both languages are covered without <unk>.
  for (const std::string line : {"die Katze läuft", "the cat runs"}) {
    for (const int64_t id : spm.encode(line)) EXPECT_NE(id, kUnkId) << line;
  }
}

TEST_F(SentencePieceTest, EncodeDecodeRoundTripsEveryTrainingLine) {
  const SentencePiece spm(model_path());
  for (const auto* corpus : {&german_, &english_}) {
    for (const auto& line : *corpus) {
      const auto ids = spm.encode(line);
      ASSERT_FALSE(ids.empty());
      for (const int64_t id : ids) ASSERT_GT(id, kUnkId) << line;  // no specials, no <unk>
      EXPECT_EQ(spm.decode(ids), line);
      EXPECT_EQ(spm.decode_pieces(spm.encode_pieces(line)), line);
    }
  }
}

TEST_F(SentencePieceTest, PiecesAndIdsAgree) {
  const SentencePiece spm(model_path());
  for (int64_t id = 0; id < spm.size(); ++id) EXPECT_EQ(spm.piece_to_id(spm.id_to_piece(id)), id);
  EXPECT_EQ(spm.piece_to_id("no-such-piece"), kUnkId);
  const auto pieces = spm.encode_pieces("the dog");
  ASSERT_FALSE(pieces.empty());
  EXPECT_EQ(pieces.front().rfind("\xe2\x96\x81", 0), 0u);  // word-initial pieces start with U+2581
  EXPECT_THROW(spm.decode({spm.size()}), std::out_of_range);
}

TEST_F(SentencePieceTest, UnseenCharactersBecomeUnknownAndDecodeVisibly) {
  const SentencePiece spm(model_path());
  const auto ids = spm.encode("der Hund 猫");
  EXPECT_NE(std::find(ids.begin(), ids.end(), kUnkId), ids.end());
  EXPECT_NE(spm.decode(ids).find("der Hund"), std::string::npos);
}

TEST_F(SentencePieceTest, CodecDecodesDetokenizedTextUpToEos) {
  const CodecPair codecs = make_sentencepiece_codecs([] {
    DataConfig data;
    data.tokenizer = Tokenizer::SentencePiece;
    data.spm_model = model_path();
    return data;
  }());
  EXPECT_EQ(codecs.src.get(), codecs.tgt.get());
  auto ids = codecs.tgt->encode("the girl plays football .");
  ids.insert(ids.begin(), kBosId);
  ids.push_back(kEosId);
  ids.push_back(codecs.tgt->encode("street").front());  // after </s>: ignored
  ids.push_back(kPadId);
  EXPECT_EQ(codecs.tgt->decode(ids), "the girl plays football .");
  EXPECT_EQ(codecs.src->fingerprint(), codecs.tgt->fingerprint());
}

TEST_F(SentencePieceTest, ModelsTrainedTwiceOnTheSameDataAreIdentical) {
  SpmTrainOptions options;
  options.vocab_size = 160;
  options.threads = 1;
  const auto prefix = (dir_->path / "again").string();
  train_sentencepiece({(dir_->path / "train.de").string(), (dir_->path / "train.en").string()}, prefix,
                      options);
  const SentencePieceCodec first{SentencePiece(model_path())};
  const SentencePieceCodec second{SentencePiece(prefix + ".model")};
  EXPECT_EQ(first.fingerprint(), second.fingerprint());
}

TEST(SentencePieceErrors, UnigramModelsTrainToo) {
  TempDir dir;
  write_lines(dir.path / "text", make_sentences(kEnglish, 300, 3));
  SpmTrainOptions options;
  options.vocab_size = 36;  // the unigram trainer's seed pieces bound it for this tiny corpus
  options.model_type = SpmModelType::Unigram;
  options.threads = 1;
  train_sentencepiece({(dir.path / "text").string()}, (dir.path / "uni").string(), options);
  const SentencePiece spm((dir.path / "uni.model").string());
  EXPECT_EQ(spm.size(), 36);
  EXPECT_EQ(spm.decode(spm.encode("the dog runs quickly .")), "the dog runs quickly .");
}

TEST(SentencePieceErrors, BadInputIsReportedWithFileAndLine) {
  TempDir dir;
  write_lines(dir.path / "bad", {"fine line", "also fine", "broken \xff byte"});
  SpmTrainOptions options;
  options.vocab_size = 50;
  try {
    train_sentencepiece({(dir.path / "bad").string()}, (dir.path / "m").string(), options);
    FAIL() << "invalid UTF-8 was accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("bad:3: invalid UTF-8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(train_sentencepiece({(dir.path / "missing").string()}, (dir.path / "m").string(), options),
               DataError);
}

TEST(SentencePieceErrors, AVocabularyTooLargeForTheDataIsRefused) {
  TempDir dir;
  write_lines(dir.path / "tiny", {"a b c", "a b d"});
  SpmTrainOptions options;
  options.vocab_size = 5000;
  try {
    train_sentencepiece({(dir.path / "tiny").string()}, (dir.path / "m").string(), options);
    FAIL() << "an impossible vocabulary size was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("SentencePiece training failed"), std::string::npos) << e.what();
  }
}

TEST(SentencePieceErrors, MissingOrCorruptModelsAreRefused) {
  TempDir dir;
  EXPECT_THROW(SentencePiece((dir.path / "none.model").string()), DataError);
  write_lines(dir.path / "junk.model", {"this is not a model"});
  EXPECT_THROW(SentencePiece((dir.path / "junk.model").string()), DataError);
  Config config;
  config.data.tokenizer = Tokenizer::SentencePiece;
  EXPECT_THROW(make_sentencepiece_codecs(config.data), std::invalid_argument);
  try {  // a config never gets that far: validate() names the keys
    validate(config);
    ADD_FAILURE() << "a sentencepiece config without a model was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("data.spm_model is empty"), std::string::npos) << e.what();
  }
}

TEST(SentencePieceErrors, TheShimIsFoundNextToTheProgramOrInTheBuild) {
  const std::string path = sentencepiece_library_path();
  EXPECT_TRUE(fs::exists(path)) << path;
  EXPECT_NE(path.find("libqkv_spm"), std::string::npos) << path;
}

// The corpus recipes (configs/multi30k_de_en.json, configs/iwslt14_de_en.json and the paper's WMT14
// configs) load, validate, and read their data through SentencePiece from a model in their data dir.
TEST(Recipes, RealCorpusConfigsUseTheSentencePiecePath) {
  const std::string root = QKV_SOURCE_DIR;
  struct Expected {
    std::string file, dir, src, tgt, dev, test;
  };
  for (const Expected& e :
       {Expected{"configs/multi30k_de_en.json", "data/multi30k_de_en", "de", "en", "val", "test_2016_flickr"},
        Expected{"configs/iwslt14_de_en.json", "data/iwslt14_de_en", "de", "en", "valid", "test"},
        Expected{"configs/aiayn/base.json", "data/wmt14_en_de", "en", "de", "newstest2013", "newstest2014"},
        Expected{"configs/aiayn/big.json", "data/wmt14_en_de", "en", "de", "newstest2013", "newstest2014"}}) {
    SCOPED_TRACE(e.file);
    const Config config = resolve_config(root + "/" + e.file);
    EXPECT_EQ(config.data.task, DataTask::Files);
    EXPECT_EQ(config.data.tokenizer, Tokenizer::SentencePiece);
    EXPECT_EQ(config.data.dir, e.dir);
    EXPECT_EQ(fs::path(config.data.spm_model).parent_path(), fs::path(e.dir));
    EXPECT_EQ(config.data.src_lang, e.src);
    EXPECT_EQ(config.data.tgt_lang, e.tgt);
    EXPECT_EQ(config.data.dev_prefix, e.dev);
    EXPECT_EQ(config.data.test_prefix, e.test);
    EXPECT_TRUE(config.data.shared_vocab && config.model.share_embeddings);
  }
}

// --- end to end through the qkv program -------------------------------------------------------------

// Runs the qkv program with `args` (stdout and stderr to `log`); returns its exit status.
int run_qkv(const std::string& args, const fs::path& log) {
  const std::string command = fmt::format("{}/qkv {} > {} 2>&1", QKV_BINARY_DIR, args, log.string());
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> read_lines_of(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The "BLEU = ..." line of a log.
std::string bleu_line(const std::string& log) {
  const size_t at = log.find("BLEU = ");
  return at == std::string::npos ? "" : log.substr(at, log.find('\n', at) - at);
}

// A tiny model on the toy task through the whole SentencePiece path: `qkv data spm`, `qkv data
// binarize`, `qkv train`, `qkv translate`, `qkv evaluate`. It checks the plumbing, not the quality
// (a few steps cannot translate): outputs are detokenized text, and evaluate's BLEU is sacreBLEU's
// on that text against the raw references.
TEST(SentencePieceEndToEnd, TrainTranslateEvaluate) {
  ASSERT_TRUE(fs::exists(fs::path(QKV_BINARY_DIR) / "qkv")) << "build the qkv target first";
  TempDir dir;
  const fs::path data = dir.path / "data", log = dir.path / "log.txt";
  const auto run = [&](const std::string& args) {
    const int status = run_qkv(args, log);
    EXPECT_EQ(status, 0) << "qkv " << args << "\n" << read_text(log);
    return status == 0;
  };
  ASSERT_TRUE(run(fmt::format("data toy --out {} --train 400 --dev 20 --test 20", data.string())));
  ASSERT_TRUE(run(fmt::format(
      "data spm --input {0}/train.src,{0}/train.tgt --vocab-size 300 --out {0} --name sp", data.string())));
  const nlohmann::json config = {{"model",
                                  {{"d_model", 32},
                                   {"d_ff", 64},
                                   {"heads", 2},
                                   {"encoder_layers", 1},
                                   {"decoder_layers", 1},
                                   {"max_len", 128}}},
                                 {"data",
                                  {{"task", "files"},
                                   {"dir", data.string()},
                                   {"tokenizer", "sentencepiece"},
                                   {"spm_model", (data / "sp.model").string()}}},
                                 {"train",
                                  {{"steps", 12},
                                   {"max_tokens", 1024},
                                   {"warmup", 4},
                                   {"eval_every", 12},
                                   {"checkpoint_every", 12},
                                   {"log_every", 4}}},
                                 {"decode", {{"beam", 2}}}};
  const fs::path config_path = dir.path / "config.json";
  std::ofstream(config_path) << config.dump(2);

  ASSERT_TRUE(run(fmt::format("data binarize --config {}", config_path.string())));
  const SentencePiece spm((data / "sp.model").string());
  const BinarizedCorpus train(binarized_path(data.string(), "train", "src", "tgt"));
  const auto train_src = read_lines_of(data / "train.src");
  ASSERT_EQ(train.size(), static_cast<int64_t>(train_src.size()));
  for (int64_t i = 0; i < train.size(); i += 37)
    EXPECT_EQ(train.src(i).to_vector(), spm.encode(train_src[i]));
  EXPECT_TRUE(fs::exists(binarized_path(data.string(), "test", "src", "tgt")));

  const fs::path run_dir = dir.path / "run", checkpoint = run_dir / "checkpoints" / "best.pt";
  ASSERT_TRUE(run(fmt::format("train --config {} --out {} --samples 0 --no-final-eval", config_path.string(),
                              run_dir.string())));
  EXPECT_NE(read_text(log).find("sentencepiece"), std::string::npos) << read_text(log);
  ASSERT_TRUE(fs::exists(checkpoint));

  const fs::path translated = dir.path / "translated.txt", hypotheses = dir.path / "hyp.txt";
  ASSERT_TRUE(run(fmt::format("translate --checkpoint {} --input {} --output {}", checkpoint.string(),
                              (data / "test.src").string(), translated.string())));
  const auto outputs = read_lines_of(translated);
  EXPECT_EQ(outputs.size(), 20u);
  for (const auto& line : outputs)
    EXPECT_EQ(line.find("\xe2\x96\x81"), std::string::npos) << "not detokenized: " << line;

  ASSERT_TRUE(run(fmt::format("evaluate --checkpoint {} --split test --hypotheses {}", checkpoint.string(),
                              hypotheses.string())));
  const std::string evaluated = bleu_line(read_text(log));
  EXPECT_EQ(read_lines_of(hypotheses), outputs);  // same beam, same model: the same translations
  ASSERT_TRUE(run(fmt::format("bleu --ref {} --hyp {}", (data / "test.tgt").string(), hypotheses.string())));
  EXPECT_FALSE(evaluated.empty());
  EXPECT_EQ(evaluated, bleu_line(read_text(log)));
}

}  // namespace

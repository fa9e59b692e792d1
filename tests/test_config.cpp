// Config loading: strict keys with suggestions, types and ranges, --set overrides, "extends", the
// cross-key invariants, and the shipped files (configs/*.json load; configs/README.md documents
// every key).
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "base/error.h"
#include "config/load.h"
#include "support.h"

namespace qkv {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The message of the ConfigError that `fn` throws; fails the test when it throws nothing.
template <class Fn>
std::string config_error(Fn fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return "";
}

// A scratch directory for config files, removed at the end of the test.
class ConfigFiles : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) { return temp_.write(name, text); }

  const test::TempDir temp_;  // this test's own directory, removed with its files at the end
  const fs::path dir_ = temp_.path;
};

TEST(ConfigJson, DefaultsWhenSectionsAreMissing) {
  const Config c = config_from_json(json::object());
  EXPECT_EQ(c.model.d_model, 512);
  EXPECT_EQ(c.train.lr_schedule, LrSchedule::Noam);
  EXPECT_EQ(c.decode.beam, 4);
  const Config partial = config_from_json(json::parse(R"({"train": {"warmup": 800}})"));
  EXPECT_EQ(partial.train.warmup, 800);
  EXPECT_EQ(partial.train.steps, TrainConfig{}.steps);
}

TEST(ConfigJson, ReadsEveryType) {
  const Config c = config_from_json(json::parse(R"({
    "model": {"d_model": 64, "dropout": 0.25, "norm": "pre", "share_embeddings": false},
    "data": {"dir": "somewhere", "task": "copy"},
    "train": {"adam_betas": [0.8, 0.99], "lr": 2, "warmup": 800.0}})"));
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_DOUBLE_EQ(c.model.dropout, 0.25);
  EXPECT_EQ(c.model.norm, NormOrder::Pre);
  EXPECT_FALSE(c.model.share_embeddings);
  EXPECT_EQ(c.data.dir, "somewhere");
  EXPECT_EQ(c.data.task, DataTask::Copy);
  EXPECT_DOUBLE_EQ(c.train.adam_betas[0], 0.8);
  EXPECT_DOUBLE_EQ(c.train.adam_betas[1], 0.99);
  EXPECT_DOUBLE_EQ(c.train.lr, 2.0);  // an integer where a number is expected
  EXPECT_EQ(c.train.warmup, 800);     // an integral float where an integer is expected
}

TEST(ConfigJson, UnknownKeyNamesPathAndNearestKey) {
  const json j = json::parse(R"({"train": {"warmpu": 800}})");
  EXPECT_EQ(config_error([&] { config_from_json(j, "configs/toy.json"); }),
            "configs/toy.json: unknown key \"train.warmpu\" (did you mean \"train.warmup\"?)");
}

TEST(ConfigJson, UnknownKeySuggestsWhereAKeyLives) {
  // A real key in the wrong section, a bare key at the top level, a misspelt section.
  EXPECT_NE(config_error([] {
              config_from_json(json::parse(R"({"train": {"beam": 5}})"));
            }).find("(did you mean \"decode.beam\"?)"),
            std::string::npos);
  EXPECT_NE(config_error([] {
              config_from_json(json::parse(R"({"d_model": 5})"));
            }).find("unknown key \"d_model\" (did you mean \"model.d_model\"?)"),
            std::string::npos);
  EXPECT_NE(config_error([] {
              config_from_json(json::parse(R"({"trian": {}})"));
            }).find("unknown key \"trian\" (did you mean \"train\"?)"),
            std::string::npos);
}

TEST(ConfigJson, WrongTypeNamesKeyAndWhatIsAllowed) {
  EXPECT_EQ(config_error([] { config_from_json(json::parse(R"({"train": {"warmup": "abc"}})"), "t.json"); }),
            "t.json: train.warmup must be an integer >= 0, got \"abc\"");
  EXPECT_EQ(config_error([] { config_from_json(json::parse(R"({"model": {"d_model": 1.5}})"), "t.json"); }),
            "t.json: model.d_model must be an integer >= 1, got 1.5");
  EXPECT_EQ(config_error([] { config_from_json(json::parse(R"({"model": {"norm": "mid"}})"), "t.json"); }),
            "t.json: model.norm must be one of \"post\", \"pre\", got \"mid\"");
  EXPECT_EQ(
      config_error([] { config_from_json(json::parse(R"({"model": {"share_embeddings": 1}})"), "t.json"); }),
      "t.json: model.share_embeddings must be true or false, got 1");
  EXPECT_EQ(config_error([] { config_from_json(json::parse(R"({"model": 3})"), "t.json"); }),
            "t.json: \"model\" must be an object of keys, got 3");
}

TEST(ConfigJson, OutOfRangeNamesKeyAndRange) {
  EXPECT_EQ(config_error([] { config_from_json(json::parse(R"({"model": {"dropout": 1.0}})"), "t.json"); }),
            "t.json: model.dropout must be a number in [0, 1), got 1.0");
  EXPECT_EQ(config_error([] { config_from_json(json::parse(R"({"model": {"d_model": 0}})"), "t.json"); }),
            "t.json: model.d_model must be an integer >= 1, got 0");
  EXPECT_EQ(config_error([] { config_from_json(json::parse(R"({"train": {"lr": 0}})"), "t.json"); }),
            "t.json: train.lr must be a number > 0, got 0");
  EXPECT_EQ(config_error(
                [] { config_from_json(json::parse(R"({"train": {"adam_betas": [0.9, 1.5]}})"), "t.json"); }),
            "t.json: train.adam_betas must be a list of two numbers in [0, 1), got [0.9,1.5]");
}

TEST(ConfigJson, RoundTripsThroughToJson) {
  Config c;
  c.model.attention = AttentionKind::MemoryEfficient;
  c.model.d_k = 32;
  c.train.adam_betas = {0.85, 0.995};
  c.data.spm_model = "spm.model";
  const json j = config_to_json(c);
  EXPECT_EQ(j["model"]["attention"], "memory_efficient");
  EXPECT_EQ(config_to_json(config_from_json(j)), j);
  EXPECT_EQ(j["train"].size() + j["model"].size() + j["data"].size() + j["decode"].size(),
            config_keys().size());
}

TEST(ConfigOverride, SetsTypedValues) {
  Config c;
  apply_override(c, "train.warmup=800");
  apply_override(c, "train.lr=1.5");
  apply_override(c, "train.lr_schedule=inverse_sqrt");
  apply_override(c, "model.share_embeddings=false");
  apply_override(c, "train.adam_betas=0.9,0.997");
  apply_override(c, "data.dir=data/other=dir");  // only the first '=' separates
  apply_override(c, "decode.beam=1");
  EXPECT_EQ(c.train.warmup, 800);
  EXPECT_DOUBLE_EQ(c.train.lr, 1.5);
  EXPECT_EQ(c.train.lr_schedule, LrSchedule::InverseSqrt);
  EXPECT_FALSE(c.model.share_embeddings);
  EXPECT_DOUBLE_EQ(c.train.adam_betas[1], 0.997);
  EXPECT_EQ(c.data.dir, "data/other=dir");
  EXPECT_EQ(c.decode.beam, 1);
  apply_override(c, "train.adam_betas=[0.8,0.9]");
  EXPECT_DOUBLE_EQ(c.train.adam_betas[0], 0.8);
}

TEST(ConfigOverride, RefusesBadOverrides) {
  Config c;
  EXPECT_EQ(config_error([&] { apply_override(c, "train.lr_schedule=foo"); }),
            "--set train.lr_schedule=foo: must be one of \"noam\", \"inverse_sqrt\", \"constant\"");
  EXPECT_EQ(config_error([&] { apply_override(c, "train.warmup=abc"); }),
            "--set train.warmup=abc: must be an integer >= 0");
  EXPECT_EQ(config_error([&] { apply_override(c, "train.warmup=-1"); }),
            "--set train.warmup=-1: must be an integer >= 0");
  EXPECT_EQ(config_error([&] { apply_override(c, "model.dropout=1"); }),
            "--set model.dropout=1: must be a number in [0, 1)");
  EXPECT_EQ(config_error([&] { apply_override(c, "train.warmpu=800"); }),
            "--set train.warmpu=800: unknown key \"train.warmpu\" (did you mean \"train.warmup\"?)");
  EXPECT_EQ(config_error([&] { apply_override(c, "warmup=800"); }),
            "--set warmup=800: unknown key \"warmup\" (did you mean \"train.warmup\"?)");
  EXPECT_NE(config_error([&] { apply_override(c, "train.warmup"); }).find("expected KEY=VALUE"),
            std::string::npos);
  EXPECT_EQ(c.train.warmup, TrainConfig{}.warmup);  // refused overrides leave the config unchanged
}

TEST(ConfigValidate, RefusesImpossibleShapes) {
  Config c;
  c.model.heads = 3;  // 512 % 3 != 0
  EXPECT_NE(config_error([&] { validate(c); }).find("model.heads (3) must divide model.d_model (512)"),
            std::string::npos);
  c.model.d_k = c.model.d_v = 64;  // explicit head sizes make any head count possible
  EXPECT_NO_THROW(validate(c));

  Config tied;
  tied.data.shared_vocab = false;
  EXPECT_NE(config_error([&] { validate(tied); }).find("model.share_embeddings"), std::string::npos);

  Config in_code;  // configs built in code are held to the per-key ranges too
  in_code.model.dropout = 1.5;
  EXPECT_EQ(config_error([&] { validate(in_code, "x"); }),
            "x: model.dropout must be a number in [0, 1), got 1.5");

  Config warmup;
  warmup.train.warmup = 0;
  EXPECT_NE(config_error([&] { validate(warmup); }).find("train.warmup must be >= 1"), std::string::npos);
  warmup.train.lr_schedule = LrSchedule::Constant;
  EXPECT_NO_THROW(validate(warmup));

  Config nbest;
  nbest.decode.nbest = 5;
  EXPECT_NE(config_error([&] { validate(nbest); }).find("decode.nbest (5) must be <= decode.beam (4)"),
            std::string::npos);

  Config small_batches;  // the longest sentence the model reads must fit a batch
  small_batches.train.max_tokens = 255;
  EXPECT_NE(config_error([&] {
              validate(small_batches);
            }).find("train.max_tokens (255) must be at least model.max_len (256)"),
            std::string::npos);
  small_batches.model.max_len = 255;
  small_batches.data.max_len = 250;
  EXPECT_NO_THROW(validate(small_batches));
}

TEST(EnumNames, RoundTrip) {
  EXPECT_EQ(to_string(AttentionKind::Reference), "reference");
  EXPECT_EQ(enum_from_string<Positional>("learned", "model.positional"), Positional::Learned);
  EXPECT_EQ(config_error([] { enum_from_string<NormOrder>("mid", "--norm"); }),
            "--norm must be one of \"post\", \"pre\", got \"mid\"");
}

TEST_F(ConfigFiles, MissingAndMalformedFiles) {
  const std::string missing = (dir_ / "nope.json").string();
  EXPECT_EQ(config_error([&] { load_config(missing); }), missing + ": no such config file");
  const std::string bad = write("bad.json", "{\n  \"train\": {\n    \"warmup\": 800,\n  }\n}\n");
  const std::string message = config_error([&] { load_config(bad); });
  EXPECT_EQ(message.rfind(bad + ": invalid JSON: parse error at line 4, column 3", 0), 0u) << message;
}

TEST_F(ConfigFiles, ExtendsOverridesItsBase) {
  write("base.json", R"({"model": {"d_model": 128, "heads": 4}, "train": {"warmup": 100, "steps": 7}})");
  const std::string child = write("child.json", R"({"extends": "base.json", "train": {"warmup": 200}})");
  const Config c = load_config(child);
  EXPECT_EQ(c.model.d_model, 128);  // from the base
  EXPECT_EQ(c.train.steps, 7);      // from the base, same section as an overridden key
  EXPECT_EQ(c.train.warmup, 200);   // overridden
  const std::string typo = write("typo.json", R"({"extends": "base.json", "train": {"stesp": 1}})");
  EXPECT_EQ(config_error([&] { load_config(typo); }),
            typo + ": unknown key \"train.stesp\" (did you mean \"train.steps\"?)");
  const std::string a = write("a.json", R"({"extends": "b.json"})");
  write("b.json", R"({"extends": "a.json"})");
  EXPECT_NE(config_error([&] { load_config(a); }).find("makes a cycle"), std::string::npos);
  EXPECT_NE(config_error([] {
              config_from_json(json::parse(R"({"extends": "base.json"})"));
            }).find("only allowed in a config file"),
            std::string::npos);
}

TEST_F(ConfigFiles, ResolveAppliesOverridesThenValidates) {
  const std::string path = write("c.json", R"({"model": {"d_model": 96, "heads": 4}})");
  EXPECT_EQ(resolve_config(path, {"model.heads=8"}).model.heads, 8);
  EXPECT_NE(
      config_error([&] { resolve_config(path, {"model.heads=5"}); }).find("model.heads (5) must divide"),
      std::string::npos);
}

TEST(ShippedConfigs, EveryConfigLoadsAndValidates) {
  int count = 0;
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(QKV_SOURCE_DIR) / "configs")) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    EXPECT_NO_THROW(resolve_config(entry.path().string()));
    ++count;
  }
  EXPECT_GE(count, 1);  // the walk found the configs at all (configs/ holds a dozen)
  const Config toy = resolve_config(std::string(QKV_SOURCE_DIR) + "/configs/toy.json");
  EXPECT_EQ(toy.data.task, DataTask::Toy);
}

TEST(ShippedConfigs, ReadmeDocumentsEveryKey) {
  std::ifstream in(std::string(QKV_SOURCE_DIR) + "/configs/README.md");
  ASSERT_TRUE(in) << "configs/README.md is missing";
  const std::string readme((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& path : config_keys()) {
    EXPECT_NE(readme.find("| `" + path + "` |"), std::string::npos)
        << path << " has no row in configs/README.md (| `" << path << "` | ... |)";
  }
}

}  // namespace
}  // namespace qkv

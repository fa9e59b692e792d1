// Checkpoints (src/checkpoint/checkpoint.h, meta.h, average.h): round trip of model, optimizer, generator
// states and metadata; atomic saves under a simulated failure; truncated and corrupt files refused with a
// CheckpointError; file rotation and the best link; parameter averaging.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "base/error.h"
#include "checkpoint/average.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/meta.h"
#include "support.h"

namespace qkv {
namespace {
namespace fs = std::filesystem;

// A two-layer network with a buffer: enough structure for nested archives.
struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl() {
    first = register_module("first", torch::nn::Linear(4, 8));
    second = register_module("second", torch::nn::Linear(8, 3));
    scale = register_buffer("scale", torch::ones({3}));
  }
  torch::Tensor forward(const torch::Tensor& x) { return second(torch::relu(first(x))) * scale; }
  torch::nn::Linear first{nullptr}, second{nullptr};
  torch::Tensor scale;
};
TORCH_MODULE(TinyNet);

class CheckpointTest : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // One Adam step on a fixed batch.
  static void train_step(TinyNet& net, torch::optim::Adam& adam) {
    adam.zero_grad();
    auto x = torch::linspace(-1, 1, 20).reshape({5, 4});
    net->forward(x).pow(2).sum().backward();
    adam.step();
  }

  static void expect_same_parameters(TinyNet& a, TinyNet& b) {
    auto pa = a->named_parameters();
    auto pb = b->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
  }

  const test::TempDir temp_;  // this test's own directory, removed with its files at the end
  const fs::path dir_ = temp_.path;
};

TEST_F(CheckpointTest, RoundTripsModelOptimizerRngAndMeta) {
  torch::manual_seed(3);
  TinyNet net;
  torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(1e-2));
  train_step(net, adam);
  nlohmann::json meta = {{"step", 1}, {"config", {{"model", {{"d_model", 8}}}}}};
  save_checkpoint(path("a.pt"), *net, &adam, meta);
  auto expected_draw = torch::randn({4});

  torch::manual_seed(99);  // a different generator state and different initial parameters
  TinyNet restored;
  torch::optim::Adam restored_adam(restored->parameters(), torch::optim::AdamOptions(1e-2));
  LoadedCheckpoint checkpoint(path("a.pt"));
  EXPECT_EQ(checkpoint.meta_json(), meta);
  ASSERT_TRUE(checkpoint.has_optimizer());
  checkpoint.load_model(*restored);
  checkpoint.load_optimizer(restored_adam);
  checkpoint.restore_rng_states();
  EXPECT_TRUE(torch::equal(torch::randn({4}), expected_draw)) << "generator state not restored";
  expect_same_parameters(net, restored);

  // The optimizer's moments came back too: one more step keeps both runs identical.
  train_step(net, adam);
  train_step(restored, restored_adam);
  expect_same_parameters(net, restored);
}

TEST_F(CheckpointTest, FailedSaveLeavesThePreviousFileLoadable) {
  TinyNet net;
  save_checkpoint(path("ckpt.pt"), *net, nullptr, {{"step", 1}});
  // A save that dies half-way through writing.
  EXPECT_THROW(write_file_atomically(path("ckpt.pt"),
                                     [](const ByteSink& sink) {
                                       sink("QKVCKPT1partial", 15);
                                       throw std::runtime_error("simulated crash mid-save");
                                     }),
               std::runtime_error);
  LoadedCheckpoint checkpoint(path("ckpt.pt"));
  EXPECT_EQ(checkpoint.meta_json()["step"], 1);
  // No temporary file is left behind.
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "ckpt.pt");
  }
  EXPECT_EQ(files, 1);
}

TEST_F(CheckpointTest, TruncatedFileIsRefused) {
  TinyNet net;
  save_checkpoint(path("full.pt"), *net, nullptr, {{"step", 7}});
  const auto size = fs::file_size(path("full.pt"));
  for (auto keep : {size - 1, size / 2, uintmax_t{10}, uintmax_t{0}}) {
    fs::copy_file(path("full.pt"), path("cut.pt"), fs::copy_options::overwrite_existing);
    fs::resize_file(path("cut.pt"), keep);
    try {
      LoadedCheckpoint checkpoint(path("cut.pt"));
      ADD_FAILURE() << "a checkpoint cut to " << keep << " bytes was accepted";
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find("cut.pt: truncated or corrupt checkpoint"), std::string::npos)
          << e.what();
    }
  }
}

TEST_F(CheckpointTest, CorruptByteIsRefused) {
  TinyNet net;
  save_checkpoint(path("ok.pt"), *net, nullptr, {{"step", 7}});
  std::fstream f(path("ok.pt"), std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(fs::file_size(path("ok.pt")) / 2));
  f.put('\x5a');
  f.close();
  EXPECT_THROW(LoadedCheckpoint{path("ok.pt")}, CheckpointError);
  std::ofstream(path("text.pt")) << "this is not a checkpoint at all, just a text file";
  EXPECT_THROW(LoadedCheckpoint{path("text.pt")}, CheckpointError);
  EXPECT_THROW(LoadedCheckpoint{path("missing.pt")}, CheckpointError);
}

TEST_F(CheckpointTest, StructureMismatchIsACheckpointError) {
  TinyNet net;
  save_checkpoint(path("net.pt"), *net, nullptr, {});
  torch::nn::Linear other(4, 8);
  LoadedCheckpoint checkpoint(path("net.pt"));
  EXPECT_THROW(checkpoint.load_model(*other), CheckpointError);
  torch::optim::Adam adam(net->parameters());
  EXPECT_THROW(checkpoint.load_optimizer(adam), CheckpointError);
}

TEST_F(CheckpointTest, FilesAreListedPrunedAndBestSurvivesPruning) {
  TinyNet net;
  for (int64_t step : {100, 200, 300, 1000})
    save_checkpoint(CheckpointFiles::step_path(dir_.string(), step), *net, nullptr, {{"step", step}});
  auto files = CheckpointFiles::list(dir_.string());
  ASSERT_EQ(files.size(), 4u);
  EXPECT_EQ(files.front().first, 100);
  EXPECT_EQ(files.back().first, 1000);  // numeric, not lexicographic, order
  CheckpointFiles::mark_best(dir_.string(), files[0].second);
  CheckpointFiles::prune(dir_.string(), 2);
  files = CheckpointFiles::list(dir_.string());
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].first, 300);
  LoadedCheckpoint best(CheckpointFiles::best_path(dir_.string()));
  EXPECT_EQ(best.meta_json()["step"], 100);
}

TEST_F(CheckpointTest, AveragingTakesTheMeanOfParameters) {
  torch::manual_seed(5);
  TinyNet a, b, c;
  CheckpointMeta meta;
  meta.config.model.d_model = 8;
  save_checkpoint(path("a.pt"), *a, nullptr, meta.to_json());
  save_checkpoint(path("b.pt"), *b, nullptr, meta.to_json());
  save_checkpoint(path("c.pt"), *c, nullptr, meta.to_json());
  TinyNet average;
  const CheckpointMeta out = average_checkpoints(*average, {path("a.pt"), path("b.pt"), path("c.pt")});
  EXPECT_EQ(out.averaged_from.size(), 3u);
  auto pa = a->named_parameters(), pb = b->named_parameters(), pc = c->named_parameters();
  for (const auto& p : average->named_parameters()) {
    auto expected = (pa[p.key()] + pb[p.key()] + pc[p.key()]) / 3;
    // float32 means of three, summed in another order: relative 1e-6 is a few float32 roundings.
    EXPECT_TRUE(torch::allclose(p.value(), expected, 0, 1e-6)) << p.key();
  }
  CheckpointMeta other = meta;
  other.config.model.d_model = 16;
  save_checkpoint(path("other.pt"), *c, nullptr, other.to_json());
  EXPECT_THROW(average_checkpoints(*average, {path("a.pt"), path("other.pt")}), CheckpointError);
}

// The typed record (checkpoint/meta.h): a round trip keeps every field, and what a reader cannot
// trust is refused with one line that names the checkpoint.
TEST(CheckpointMeta, RoundTripsEveryField) {
  CheckpointMeta meta;
  meta.config.model.d_model = 64;
  meta.step = 1200;
  meta.data_position = {3, 17};
  meta.codecs = {{"kind", "word"}, {"shared", true}, {"src", {"<pad>", "<s>", "</s>", "<unk>", "a"}}};
  meta.best = BestScore{1000, 31.5, 1.25};
  meta.evals_without_improvement = 2;
  meta.elapsed_s = 12.5;
  meta.flops = 3e12;
  const CheckpointMeta back = CheckpointMeta::from_json(meta.to_json(), "x.pt");
  EXPECT_EQ(back.to_json(), meta.to_json());
  EXPECT_EQ(back.config.model.d_model, 64);
  EXPECT_EQ(back.data_position, (BatchPosition{3, 17}));
  ASSERT_TRUE(back.best.has_value());
  EXPECT_EQ(back.best->step, 1000);
  EXPECT_EQ(back.make_codecs("x.pt").src->size(), 5);
}

std::string meta_error(const nlohmann::json& record) {
  try {
    const CheckpointMeta meta = CheckpointMeta::from_json(record, "runs/x/step-5.pt");
    meta.make_codecs("runs/x/step-5.pt");
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

TEST(CheckpointMeta, NewerOrForeignRecordsAreRefused) {
  nlohmann::json record = CheckpointMeta{}.to_json();
  record["codecs"] = {{"kind", "word"}, {"shared", true}, {"src", {"<pad>", "<s>", "</s>", "<unk>"}}};
  EXPECT_EQ(meta_error(record), "");
  record["version"] = CheckpointMeta::kVersion + 1;
  EXPECT_NE(meta_error(record).find("runs/x/step-5.pt: checkpoint format version 2"), std::string::npos)
      << meta_error(record);
  record["version"] = CheckpointMeta::kVersion;
  record["format"] = "something-else";
  EXPECT_NE(meta_error(record).find("runs/x/step-5.pt: not a qkv checkpoint"), std::string::npos);
  record["format"] = "qkv-checkpoint";
  record.erase("step");
  EXPECT_NE(meta_error(record).find("runs/x/step-5.pt: unusable checkpoint record"), std::string::npos);
}

TEST(CheckpointMeta, CraftedConfigsAndVocabulariesAreRefusedNamingTheFile) {
  const nlohmann::json good = [] {
    CheckpointMeta meta;
    meta.codecs = {{"kind", "word"}, {"shared", true}, {"src", {"<pad>", "<s>", "</s>", "<unk>"}}};
    return meta.to_json();
  }();
  const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> cases = {
      {[](nlohmann::json& j) { j["config"]["model"]["heads"] = 7; }, "model.heads (7) must divide"},
      {[](nlohmann::json& j) { j["config"]["decode"]["nbest"] = 9; }, "decode.nbest (9) must be <="},
      {[](nlohmann::json& j) { j["codecs"]["kind"] = "bytes"; }, "unknown vocabulary kind \"bytes\""},
      {[](nlohmann::json& j) {
         j["codecs"]["src"] = {"<pad>", "<s>"};
       },
       "the vocabulary is invalid"},
  };
  for (const auto& [craft, fragment] : cases) {
    nlohmann::json record = good;
    craft(record);
    const std::string error = meta_error(record);
    EXPECT_EQ(error.rfind("runs/x/step-5.pt", 0), 0u) << error;
    EXPECT_NE(error.find(fragment), std::string::npos) << error;
  }
}

}  // namespace
}  // namespace qkv

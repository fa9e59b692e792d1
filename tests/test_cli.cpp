// The qkv program as a user runs it (the built binary in QKV_BINARY_DIR): --help, exit codes (2 for
// usage and config errors, 1 for runtime errors), and an end-to-end smoke test of train, resume,
// translate, evaluate and average on configs/tiny.json.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "support.h"

namespace {
namespace fs = std::filesystem;

struct Result {
  int code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `qkv <args>` from the source directory (where configs/ lives).
Result qkv(const std::string& args) {
  const std::string command =
      fmt::format("cd '{}' && '{}/qkv' {} 2>&1", QKV_SOURCE_DIR, QKV_BINARY_DIR, args);
  Result run;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) run.output.append(buffer, n);
  const int status = ::pclose(pipe);
  run.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

size_t count_lines(const fs::path& path) {
  std::ifstream in(path);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

class CliTest : public ::testing::Test {
 protected:
  // Options that keep a tiny run inside the test's directory.
  std::string tiny(const std::string& run) const {
    return fmt::format("--config configs/tiny.json --out '{}' --set data.dir='{}'", (dir_ / run).string(),
                       (dir_ / "data").string());
  }
  const qkv::test::TempDir temp_;  // this test's own directory, removed with its files at the end
  const fs::path dir_ = temp_.path;
};

TEST_F(CliTest, HelpExitsZero) {
  for (const auto* command :
       {"--help", "train --help", "translate --help", "evaluate --help", "average --help"}) {
    const Result run = qkv(command);
    EXPECT_EQ(run.code, 0) << command << "\n" << run.output;
    EXPECT_TRUE(contains(run.output, "Usage")) << command << "\n" << run.output;
  }
}

TEST_F(CliTest, UsageAndConfigErrorsExitTwo) {
  const std::string bad_checkpoint = (dir_ / "some.pt").string();
  std::ofstream(bad_checkpoint) << "junk";
  for (const auto& args : {
           std::string("train"),                                                    // no --config
           std::string("train --config configs/does-not-exist.json"),               // missing file
           std::string("train --config configs/tiny.json --set train.warmpu=3"),    // unknown key
           std::string("train --config configs/tiny.json --set train.steps=many"),  // wrong type
           std::string("translate"),                                                // no --checkpoint
           "evaluate --checkpoint " + bad_checkpoint + " --split bogus",            // not a split
           "translate --checkpoint " + bad_checkpoint + " --precision fp64",        // not a precision
           "average --out " + (dir_ / "avg.pt").string(),                           // nothing to average
           std::string("no-such-command"),
       }) {
    const Result run = qkv(args);
    EXPECT_EQ(run.code, 2) << "qkv " << args << "\n" << run.output;
    EXPECT_FALSE(run.output.empty()) << "qkv " << args << " printed no message";
  }
}

TEST_F(CliTest, CorruptCheckpointExitsOneWithAClearMessage) {
  const std::string path = (dir_ / "corrupt.pt").string();
  std::ofstream(path) << "QKVCKPT1 and then nothing a checkpoint should hold";
  const Result run = qkv("translate --checkpoint " + path + " --input configs/tiny.json");
  EXPECT_EQ(run.code, 1) << run.output;
  EXPECT_TRUE(contains(run.output, "truncated or corrupt checkpoint")) << run.output;
}

TEST_F(CliTest, TrainTranslateEvaluateAverageEndToEnd) {
  Result run = qkv("train " + tiny("run"));
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "[train] parameters:")) << run.output;
  EXPECT_TRUE(contains(run.output, "[result] test BLEU = ")) << run.output;
  EXPECT_TRUE(contains(run.output, "[sample 1] ref: ")) << run.output;
  EXPECT_TRUE(contains(run.output, "training FLOPs")) << run.output;
  const fs::path out = dir_ / "run";
  for (const auto* file :
       {"config.json", "metrics.jsonl", "vocab.txt", "checkpoints/best.pt", "checkpoints/step-20.pt"})
    EXPECT_TRUE(fs::exists(out / file)) << file;

  // An existing run is neither overwritten nor silently continued.
  run = qkv("train " + tiny("run"));
  EXPECT_EQ(run.code, 2) << run.output;
  EXPECT_TRUE(contains(run.output, "already holds a training run")) << run.output;
  // Resuming keeps the architecture: a --set on a model key that changes it is refused.
  run = qkv(fmt::format("train --out '{}' --resume --set model.d_model=64", out.string()));
  EXPECT_EQ(run.code, 2) << run.output;
  // ... but the precision may change: the checkpoint's weights are fp32 whatever trained them.
  run =
      qkv(fmt::format("train --out '{}' --resume --set train.steps=30 --set train.precision=bf16 "
                      "--no-final-eval",
                      out.string()));
  EXPECT_EQ(run.code, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "resumed from")) << run.output;
  EXPECT_TRUE(contains(run.output, "precision: bf16")) << run.output;
  EXPECT_TRUE(fs::exists(out / "checkpoints/step-30.pt"));

  const std::string best = (out / "checkpoints/best.pt").string();
  const fs::path dev_src = dir_ / "data" / "dev.src";
  const fs::path hyps = dir_ / "hyps.txt";
  run = qkv(fmt::format("translate --checkpoint '{}' --input '{}' --output '{}' --beam 2", best,
                        dev_src.string(), hyps.string()));
  EXPECT_EQ(run.code, 0) << run.output;
  EXPECT_EQ(count_lines(hyps), count_lines(dev_src));
  run = qkv(fmt::format("translate --checkpoint '{}' --beam 1 < '{}'", best, dev_src.string()));
  EXPECT_EQ(run.code, 0) << run.output;
  run = qkv(fmt::format("translate --checkpoint '{}' --input '{}' --output '{}' --precision bf16", best,
                        dev_src.string(), hyps.string()));
  EXPECT_EQ(run.code, 0) << run.output;
  EXPECT_EQ(count_lines(hyps), count_lines(dev_src));

  run = qkv(fmt::format("evaluate --checkpoint '{}' --split dev", best));
  EXPECT_EQ(run.code, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "BLEU = ")) << run.output;
  EXPECT_TRUE(contains(run.output, "ppl ")) << run.output;

  const std::string average = (dir_ / "average.pt").string();
  run = qkv(fmt::format("average --out '{}' --last 2 --dir '{}'", average, (out / "checkpoints").string()));
  EXPECT_EQ(run.code, 0) << run.output;
  run = qkv(fmt::format("evaluate --checkpoint '{}' --split test --precision bf16", average));
  EXPECT_EQ(run.code, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "bf16")) << run.output;
}

// fp16 needs CUDA: on a machine without a GPU, training and decoding in it are refused up front.
TEST_F(CliTest, Fp16IsRefusedWithoutAGpu) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is present: fp16 runs there";
  Result run = qkv("train " + tiny("fp16") + " --set train.precision=fp16");
  EXPECT_EQ(run.code, 2) << run.output;
  EXPECT_TRUE(contains(run.output, "train.precision \"fp16\" needs a CUDA device")) << run.output;
  const std::string checkpoint = (dir_ / "none.pt").string();
  std::ofstream(checkpoint) << "junk";
  run = qkv("translate --checkpoint " + checkpoint + " --precision fp16");
  EXPECT_EQ(run.code, 2) << run.output;
  EXPECT_TRUE(contains(run.output, "--precision fp16 needs a CUDA device")) << run.output;
}

}  // namespace

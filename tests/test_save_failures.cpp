// Saves that the disk refuses (src/checkpoint/checkpoint.h, the trainer's save): a write that fails at
// any point of the file, a full file system, and a process killed mid-save. Each must end in one
// CheckpointError naming the file and the system's reason, with no temporary file left and the
// previous checkpoint intact and still the newest one that --resume finds.
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "base/error.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/meta.h"
#include "support.h"
#include "train/run_setup.h"
#include "train/trainer.h"
#include "write_faults.h"

namespace qkv {
namespace {
namespace fs = std::filesystem;
using test::FileSizeLimit;
using test::SmallTmpfs;
using test::TempDir;

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.rfind(prefix, 0) == 0;
}
bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The names of the files in `dir`, sorted.
std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The CheckpointError of `save`, or "" when it succeeded.
template <class Save>
std::string save_error(Save save) {
  try {
    save();
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

torch::nn::Sequential small_net(int64_t width) {
  return torch::nn::Sequential(torch::nn::Linear(16, width), torch::nn::ReLU(), torch::nn::Linear(width, 4));
}

// A write refused at any byte of the file (the header, inside libtorch's archive, the tail) fails the
// same way. Before the fix, a refusal inside the archive aborted the program from libtorch's zip
// writer ("unexpected pos", exit 134).
TEST(SaveFailures, AWriteRefusedAnywhereInTheFileIsOneErrorAndNoDebris) {
  TempDir dir;
  const std::string path = (dir.path / "ckpt.pt").string();
  save_checkpoint(path, *small_net(32), nullptr, {{"step", 1}});
  auto next = small_net(64);
  const auto size = fs::file_size(path);
  save_checkpoint((dir.path / "probe.pt").string(), *next, nullptr, {{"step", 2}});
  const auto next_size = fs::file_size(dir.path / "probe.pt");
  fs::remove(dir.path / "probe.pt");
  ASSERT_GT(next_size, size);

  for (const rlim_t limit : {rlim_t{0}, rlim_t{8}, rlim_t{100}, rlim_t{4096}, rlim_t{next_size / 2},
                             rlim_t{next_size - 25}, rlim_t{next_size - 1}}) {
    std::string error;
    {
      FileSizeLimit limited(limit);
      ASSERT_TRUE(limited.ok());
      error = save_error([&] { save_checkpoint(path, *next, nullptr, {{"step", 2}}); });
    }
    EXPECT_TRUE(starts_with(error, path + ": cannot save")) << "limit " << limit << ": " << error;
    EXPECT_TRUE(contains(error, std::strerror(EFBIG))) << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
    EXPECT_EQ(files_in(dir.path), std::vector<std::string>{"ckpt.pt"}) << "limit " << limit;
    EXPECT_EQ(LoadedCheckpoint(path).meta_json()["step"], 1) << "limit " << limit;
  }
}

// A full file system (a real one: a small tmpfs) fails with ENOSPC, and works again once there is
// room.
TEST(SaveFailures, AFullFileSystemKeepsThePreviousCheckpoint) {
  TempDir dir;
  const fs::path disk = dir.path / "disk";
  SmallTmpfs tmpfs(disk, 256 * 1024);
  if (!tmpfs.mounted()) GTEST_SKIP() << tmpfs.why();
  const std::string path = (disk / "ckpt.pt").string();
  save_checkpoint(path, *small_net(32), nullptr, {{"step", 1}});
  ASSERT_GT(test::fill_file_system(disk), 0u);

  const std::string error = save_error([&] {
    save_checkpoint(path, *small_net(32), nullptr, {{"step", 2}});
  });
  EXPECT_TRUE(starts_with(error, path + ": cannot save")) << error;
  EXPECT_TRUE(contains(error, std::strerror(ENOSPC))) << error;
  EXPECT_EQ(files_in(disk), (std::vector<std::string>{"ckpt.pt", "filler"}));
  EXPECT_EQ(LoadedCheckpoint(path).meta_json()["step"], 1);

  fs::remove(disk / "filler");
  save_checkpoint(path, *small_net(32), nullptr, {{"step", 2}});
  EXPECT_EQ(LoadedCheckpoint(path).meta_json()["step"], 2);
}

// A process that dies mid-save (kill -9) leaves its temporary file; the next run in the directory
// removes it, but never a live process's save in progress.
TEST(SaveFailures, TemporariesOfKilledSavesAreRemoved) {
  TempDir dir;
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr, 0);  // `child` is now a process id that no process has
  for (const auto& name : {fmt::format(".step-10.pt.tmp-{}", child), fmt::format(".best.pt.tmp-{}", child),
                           fmt::format(".step-20.pt.tmp-{}", ::getpid()), std::string(".step-30.pt.tmp-1"),
                           std::string("step-5.pt")})
    std::ofstream(dir.path / name) << "partial";
  EXPECT_EQ(CheckpointFiles::remove_stale_temporaries(dir.path.string()), 2);
  EXPECT_EQ(files_in(dir.path), (std::vector<std::string>{fmt::format(".step-20.pt.tmp-{}", ::getpid()),
                                                          ".step-30.pt.tmp-1", "step-5.pt"}));
}

Config copy_task_config(const fs::path& dir) {
  Config c;
  c.model.d_model = 32;
  c.model.d_ff = 64;
  c.model.heads = 2;
  c.model.encoder_layers = 1;
  c.model.decoder_layers = 1;
  c.model.max_len = 32;
  c.data.task = DataTask::Copy;
  c.data.dir = (dir / "data").string();
  c.data.train_size = 300;
  c.data.dev_size = 20;
  c.data.test_size = 20;
  c.data.max_len = 20;
  c.train.max_tokens = 256;
  c.train.warmup = 10;
  c.train.eval_every = 1000;
  c.train.checkpoint_every = 10;
  c.train.log_every = 10;
  c.decode.beam = 1;
  validate(c);
  return c;
}

std::map<std::string, torch::Tensor> parameters_of(Transformer& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : model->named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

// Through the trainer: the step-20 save fails, the error says what is still there, and resuming
// from it ends with the parameters of a run that never failed.
TEST(SaveFailures, TrainingStopsOnAFailedSaveAndResumesFromThePreviousCheckpoint) {
  TempDir dir;
  std::ostringstream log;
  auto options = [&](const std::string& run, bool resume) {
    TrainOptions o;
    o.out_dir = (dir.path / run).string();
    o.resume = resume;
    o.log = &log;
    o.final_evaluation = false;
    return o;
  };
  Config config = copy_task_config(dir.path);
  config.train.steps = 20;
  std::map<std::string, torch::Tensor> uninterrupted;
  {
    Trainer trainer(config, options("straight", false));
    trainer.run();
    uninterrupted = parameters_of(trainer.model());
  }
  config.train.steps = 10;
  Trainer(config, options("failing", false)).run();
  const RunPaths paths((dir.path / "failing").string());
  const auto checkpoint_bytes = fs::file_size(*latest_checkpoint(paths));

  config.train.steps = 20;
  std::string error;
  {
    Trainer trainer(config, options("failing", true));
    // Small files (metrics.jsonl) still grow; a checkpoint no longer fits.
    FileSizeLimit limited(checkpoint_bytes / 2);
    ASSERT_TRUE(limited.ok());
    error = save_error([&] { trainer.run(); });
  }
  const std::string step10 = CheckpointFiles::step_path(paths.checkpoints, 10);
  const std::string step20 = CheckpointFiles::step_path(paths.checkpoints, 20);
  EXPECT_TRUE(starts_with(error, step20 + ": cannot save")) << error;
  EXPECT_TRUE(contains(error, std::strerror(EFBIG))) << error;
  EXPECT_TRUE(contains(error, "the previous checkpoint " + step10 + " is intact")) << error;
  EXPECT_EQ(files_in(paths.checkpoints), std::vector<std::string>{"step-10.pt"});
  EXPECT_EQ(latest_checkpoint(paths), step10);

  Trainer resumed(config, options("failing", true));
  EXPECT_EQ(resumed.run().step, 20);
  for (const auto& [name, value] : parameters_of(resumed.model()))
    EXPECT_TRUE(torch::equal(value, uninterrupted.at(name))) << name;
}

}  // namespace
}  // namespace qkv

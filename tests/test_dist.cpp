// Data-parallel training (src/dist/, docs/distributed.md): the launchers' environment, each batch of an
// epoch handed out once whatever the number of processes, the bucketed gradient sum, and whole runs of
// several `qkv` processes on loopback: equivalence with gradient accumulation, bit-for-bit
// reproducibility, resuming with another number of processes, a worker killed mid-run, and
// `qkv train --nproc 2` end to end. Every process a test starts is bounded in time and killed at the
// end of the test if it is still running.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "base/error.h"
#include "checkpoint/checkpoint.h"
#include "data/batching.h"
#include "dist/launch.h"
#include "dist/local_launcher.h"
#include "dist/reducer.h"
#include "dist/world.h"
#include "eval/translate.h"
#include "support.h"

namespace qkv {
namespace {
namespace fs = std::filesystem;
using test::TempDir;

// ---- the launchers' environment ----------------------------------------------------------------------

// Sets environment variables for one test and restores them afterwards.
class Environment {
 public:
  Environment() {
    for (const char* name : kNames) {
      if (const char* value = std::getenv(name)) saved_[name] = value;
      ::unsetenv(name);
    }
  }
  ~Environment() {
    for (const char* name : kNames) {
      const auto it = saved_.find(name);
      if (it == saved_.end())
        ::unsetenv(name);
      else
        ::setenv(name, it->second.c_str(), 1);
    }
  }
  void set(const char* name, const std::string& value) { ::setenv(name, value.c_str(), 1); }

 private:
  static constexpr const char* kNames[] = {"RANK",
                                           "WORLD_SIZE",
                                           "LOCAL_RANK",
                                           "LOCAL_WORLD_SIZE",
                                           "MASTER_ADDR",
                                           "MASTER_PORT",
                                           "SLURM_PROCID",
                                           "SLURM_NTASKS",
                                           "SLURM_LOCALID",
                                           "SLURM_NTASKS_PER_NODE",
                                           "SLURM_TASKS_PER_NODE",
                                           "TORCHELASTIC_USE_AGENT_STORE",
                                           "TORCHELASTIC_RESTART_COUNT",
                                           "TORCHELASTIC_RUN_ID"};
  std::map<std::string, std::string> saved_;
};

std::string launch_error() {
  try {
    dist::LaunchInfo::from_environment();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(LaunchInfo, WithoutALauncherIsOneProcess) {
  Environment env;
  const auto info = dist::LaunchInfo::from_environment();
  EXPECT_EQ(info.world_size, 1);
  EXPECT_EQ(info.rank, 0);
  EXPECT_FALSE(info.distributed());
}

TEST(LaunchInfo, ReadsTorchrunsContract) {
  Environment env;
  env.set("RANK", "3");
  env.set("WORLD_SIZE", "4");
  env.set("LOCAL_RANK", "1");
  env.set("LOCAL_WORLD_SIZE", "2");
  env.set("MASTER_ADDR", "10.1.2.3");
  env.set("MASTER_PORT", "29511");
  env.set("TORCHELASTIC_USE_AGENT_STORE", "True");
  env.set("TORCHELASTIC_RESTART_COUNT", "2");
  env.set("TORCHELASTIC_RUN_ID", "job");
  const auto info = dist::LaunchInfo::from_environment();
  EXPECT_EQ(info.launcher, "torchrun");
  EXPECT_EQ(info.rank, 3);
  EXPECT_EQ(info.world_size, 4);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.local_world_size, 2);
  EXPECT_EQ(info.master_addr, "10.1.2.3");
  EXPECT_EQ(info.master_port, 29511);
  EXPECT_TRUE(info.agent_store);
  EXPECT_EQ(info.restart_count, 2);
}

TEST(LaunchInfo, ReadsSlurm) {
  Environment env;
  env.set("SLURM_PROCID", "5");
  env.set("SLURM_NTASKS", "8");
  env.set("SLURM_LOCALID", "1");
  env.set("SLURM_TASKS_PER_NODE", "2(x4)");
  env.set("MASTER_ADDR", "node01");
  env.set("MASTER_PORT", "29600");
  const auto info = dist::LaunchInfo::from_environment();
  EXPECT_EQ(info.launcher, "slurm");
  EXPECT_EQ(info.rank, 5);
  EXPECT_EQ(info.world_size, 8);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.local_world_size, 2);
  EXPECT_EQ(info.master_addr, "node01");
}

TEST(LaunchInfo, BadValuesNameTheVariable) {
  Environment env;
  env.set("RANK", "1");
  EXPECT_NE(launch_error().find("RANK is set but WORLD_SIZE is not"), std::string::npos) << launch_error();
  env.set("WORLD_SIZE", "2");
  EXPECT_NE(launch_error().find("MASTER_ADDR and MASTER_PORT"), std::string::npos) << launch_error();
  env.set("MASTER_ADDR", "127.0.0.1");
  env.set("MASTER_PORT", "70000");
  EXPECT_NE(launch_error().find("MASTER_PORT=70000"), std::string::npos) << launch_error();
  env.set("MASTER_PORT", "29500");
  env.set("RANK", "2");  // ranks are 0 and 1
  EXPECT_NE(launch_error().find("RANK=2"), std::string::npos) << launch_error();
}

// ---- every batch once, whatever the number of processes ---------------------------------------------

std::vector<Example> numbered_examples(int64_t n) {
  std::vector<Example> examples;
  for (int64_t i = 0; i < n; ++i) {
    const auto len = static_cast<size_t>(3 + i % 17);
    examples.push_back({std::vector<int64_t>(len, 4 + i % 11), std::vector<int64_t>(len + i % 3, 5)});
  }
  return examples;
}

// Two processes take updates of 2 × 1 batches for a while; then one process continues from the same
// position with updates of 1 × 2. Over the epoch every pair is read exactly once.
TEST(Batching, SharesCoverTheEpochOnceWhenTheProcessCountChanges) {
  const auto examples = numbered_examples(300);
  BatchIterator rank0(examples, 64, 7), rank1(examples, 64, 7);
  std::multiset<int64_t> seen;
  auto take = [&](const std::vector<Batch>& batches) {
    for (const auto& batch : batches) seen.insert(batch.indices.begin(), batch.indices.end());
  };
  const int64_t batches = rank0.batches_in_epoch();
  ASSERT_GT(batches, 10);
  for (int64_t update = 0; update < batches / 4; ++update) {
    take(rank0.next_share(1, 2, 0));
    take(rank1.next_share(1, 2, 1));
  }
  ASSERT_EQ(rank0.position(), rank1.position());  // the position is the same everywhere
  BatchIterator alone(examples, 64, 7);
  alone.restore(rank0.position());
  while (alone.position().epoch == 0 && alone.position().index < batches) take(alone.next_share(1, 1, 0));
  EXPECT_EQ(seen.size(), examples.size());
  for (int64_t i = 0; i < static_cast<int64_t>(examples.size()); ++i) EXPECT_EQ(seen.count(i), 1u) << i;
}

// ---- the bucketed gradient sum ------------------------------------------------------------------------

// Normal draws from a generator of our own: the two ranks of a test run as threads of one process, and
// libtorch's default generator is shared by them (seeding it from both would race).
torch::Tensor seeded_randn(at::IntArrayRef shape, uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  return at::randn(shape, generator, torch::TensorOptions(torch::kDouble));
}

struct TinyNet : torch::nn::Module {
  TinyNet() {
    w1 = register_parameter("w1", seeded_randn({7, 5}, 1));
    b1 = register_parameter("b1", seeded_randn({7}, 2));
    w2 = register_parameter("w2", seeded_randn({3, 7}, 3));
    unused = register_parameter("unused", seeded_randn({4}, 4));  // never gets a gradient
  }
  torch::Tensor loss(const torch::Tensor& x) {
    return torch::tanh(x.matmul(w1.t()) + b1).matmul(w2.t()).pow(2).sum();
  }
  torch::Tensor w1, b1, w2, unused;
};

// Rank `rank`'s gradient over its two batches, accumulated as a step accumulates them; with a world,
// summed over the ranks by a reducer whose tiny buckets (8 doubles first, then 6) spread the
// parameters over three of them.
std::vector<torch::Tensor> step_gradients(int rank, dist::World* world, int64_t* buckets = nullptr) {
  TinyNet net;
  std::unique_ptr<dist::GradientReducer> reducer;
  if (world) {
    reducer = std::make_unique<dist::GradientReducer>(*world, net.parameters(), 6 * 8, 8 * 8);
    if (buckets) *buckets = reducer->buckets();
  }
  for (int i = 0; i < 2; ++i) {
    const auto x = seeded_randn({6, 5}, static_cast<uint64_t>(100 + 10 * rank + i));  // [B, in]
    if (reducer) reducer->begin_backward(/*exchange=*/i == 1);
    net.loss(x).backward();
  }
  if (reducer) reducer->finish();
  std::vector<torch::Tensor> grads;
  for (const auto& p : net.parameters())
    grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  return grads;
}

TEST(GradientReducer, SumsTheRanksGradientsBucketByBucket) {
  const int port = dist::free_loopback_port();
  std::vector<std::vector<torch::Tensor>> reduced(2);
  std::vector<int64_t> buckets(2);
  std::vector<std::string> errors(2);
  auto rank_main = [&](int rank) {
    try {
      dist::LaunchInfo launch;
      launch.rank = launch.local_rank = rank;
      launch.world_size = launch.local_world_size = 2;
      launch.master_port = port;
      auto world = dist::World::join(launch, DistBackend::Gloo, std::chrono::seconds(60));
      const auto r = static_cast<size_t>(rank);
      reduced[r] = step_gradients(rank, world.get(), &buckets[r]);
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(rank)] = e.what();
    }
  };
  std::thread r0(rank_main, 0), r1(rank_main, 1);
  r0.join();
  r1.join();
  ASSERT_EQ(errors[0], "");
  ASSERT_EQ(errors[1], "");
  EXPECT_EQ(buckets[0], 3);
  const auto g0 = step_gradients(0, nullptr), g1 = step_gradients(1, nullptr);
  for (size_t i = 0; i < g0.size(); ++i) {
    // The sum of two terms is the same in either order: the result is exact, and the same on both ranks.
    EXPECT_TRUE(torch::equal(reduced[0][i], g0[i] + g1[i])) << "parameter " << i;
    EXPECT_TRUE(torch::equal(reduced[1][i], reduced[0][i])) << "parameter " << i;
  }
}

// ---- whole runs of several processes -------------------------------------------------------------------

// A `qkv` process started by a test: output into a file, killed if still running when the test ends.
class Process {
 public:
  Process(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
          const fs::path& log)
      : log_(log) {
    pid_ = ::fork();
    if (pid_ != 0) return;
    if (::chdir(QKV_SOURCE_DIR) != 0) ::_exit(126);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    for (const auto& [name, value] : env) ::setenv(name.c_str(), value.c_str(), 1);
    const std::string program = std::string(QKV_BINARY_DIR) + "/qkv";
    std::vector<char*> argv{const_cast<char*>(program.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  }
  ~Process() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // The exit code (128 + N when killed by signal N), or nullopt if it was still running after `limit`.
  std::optional<int> wait(std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!status_ && std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_)
        status_ = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return status_;
  }
  std::string output() const {
    std::ifstream in(log_);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Generous bounds: a tiny run takes a few seconds; these only stop a hung test.
constexpr std::chrono::seconds kRunLimit{240};

class DistRunTest : public ::testing::Test {
 protected:
  // The tiny config without dropout (so that runs can be compared exactly), one thread per process.
  std::vector<std::string> train_args(const std::string& run, int64_t steps,
                                      std::vector<std::string> sets) const {
    std::vector<std::string> args{"--threads",
                                  "1",
                                  "train",
                                  "--config",
                                  "configs/tiny.json",
                                  "--out",
                                  (dir_.path / run).string(),
                                  "--no-final-eval",
                                  "--set",
                                  "data.dir=" + (dir_.path / "data").string(),
                                  "--set",
                                  "model.dropout=0",
                                  "--set",
                                  "train.max_tokens=256",
                                  "--set",
                                  fmt::format("train.steps={}", steps),
                                  "--set",
                                  "train.log_every=1",
                                  "--set",
                                  "train.eval_every=1000",
                                  "--set",
                                  "train.checkpoint_every=2",
                                  "--set",
                                  "train.keep_checkpoints=100",
                                  "--set",
                                  "train.dist_timeout_s=30"};
    for (auto& s : sets) {
      args.push_back("--set");
      args.push_back(std::move(s));
    }
    return args;
  }

  // Runs qkv to the end; fails the test unless it exits 0.
  std::string run_ok(const std::vector<std::string>& args, const std::string& log_name) {
    Process p(args, {}, dir_.path / log_name);
    const auto code = p.wait(kRunLimit);
    EXPECT_EQ(code, std::optional<int>(0)) << p.output();
    return p.output();
  }

  std::map<std::string, torch::Tensor> parameters_at(const std::string& run, int64_t step) const {
    const auto path = CheckpointFiles::step_path((dir_.path / run / "checkpoints").string(), step);
    InferenceModel loaded = load_inference_model(path, torch::kCPU);
    std::map<std::string, torch::Tensor> out;
    for (const auto& p : loaded.model->named_parameters()) out[p.key()] = p.value().detach().clone();
    return out;
  }

  // "loss" of every step in a run's metrics.jsonl.
  std::vector<double> losses(const std::string& run) const {
    std::vector<double> out;
    std::ifstream in(dir_.path / run / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const auto record = nlohmann::json::parse(line);
      if (record.value("split", "") == "train") out.push_back(record.at("loss").get<double>());
    }
    return out;
  }

  TempDir dir_;
};

// Largest difference between two runs' parameters (inf when the names differ).
double max_difference(const std::map<std::string, torch::Tensor>& a,
                      const std::map<std::string, torch::Tensor>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double worst = 0.0;
  for (const auto& [name, value] : a) {
    const auto it = b.find(name);
    if (it == b.end()) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, (value - it->second).abs().max().item<double>());
  }
  return worst;
}

// Two processes with one batch each per update compute what one process computes with two batches
// per update (fairseq's convention: max_tokens is per process).
TEST_F(DistRunTest, TwoProcessesEqualOneProcessAccumulatingTwoBatches) {
  run_ok(train_args("one", 6, {"train.update_freq=2"}), "one.log");
  auto two = train_args("two", 6, {});
  two.insert(two.begin() + 3, {"--nproc", "2"});
  const std::string output = run_ok(two, "two.log");
  EXPECT_NE(output.find("[dist] rank 0 of 2 (local 0 of 2), backend gloo, master 127.0.0.1:"),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("1 threads per worker"), std::string::npos) << output;
  const auto a = losses("one"), b = losses("two");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  // The two runs differ only in the order in which float32 gradients are summed (each element is the
  // sum of the same per-batch terms), a few ulps (2^-24 relative) per step, which Adam turns into
  // parameter differences of the same relative order; 1e-5 leaves orders of magnitude of margin for
  // six steps and still catches a batch dropped, counted twice or normalised by the wrong count.
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * std::abs(a[i])) << "step " << i + 1;
  EXPECT_LT(max_difference(parameters_at("one", 6), parameters_at("two", 6)), 1e-5);
}

TEST_F(DistRunTest, SameSeedSameProcessesSameParametersBitForBit) {
  for (const char* run : {"a", "b"}) {
    auto args = train_args(run, 4, {"model.dropout=0.1"});  // dropout on: masks drawn per rank and step
    args.insert(args.begin() + 3, {"--nproc", "2"});
    run_ok(args, std::string(run) + ".log");
  }
  EXPECT_EQ(max_difference(parameters_at("a", 4), parameters_at("b", 4)), 0.0);
}

// A run saved with two processes resumes with one (which then takes both batches of each update),
// and the reverse: the result is the uninterrupted two-process run's, bit for bit, because the data
// position is global and every update's batches and sums are the same.
TEST_F(DistRunTest, ResumesWithAnotherNumberOfProcesses) {
  auto straight = train_args("straight", 8, {});
  straight.insert(straight.begin() + 3, {"--nproc", "2"});
  run_ok(straight, "straight.log");

  auto first = train_args("switch", 4, {});
  first.insert(first.begin() + 3, {"--nproc", "2"});
  run_ok(first, "switch-1.log");
  auto second = train_args("switch", 8, {"train.update_freq=2"});
  second.push_back("--resume");
  const std::string resumed = run_ok(second, "switch-2.log");
  EXPECT_NE(resumed.find("resumed from"), std::string::npos) << resumed;
  EXPECT_EQ(max_difference(parameters_at("straight", 8), parameters_at("switch", 8)), 0.0);

  auto third = train_args("switch", 12, {});
  third.insert(third.begin() + 3, {"--nproc", "2"});
  third.push_back("--resume");
  run_ok(third, "switch-3.log");
  auto longer = train_args("straight", 12, {});
  longer.insert(longer.begin() + 3, {"--nproc", "2"});
  longer.push_back("--resume");
  run_ok(longer, "straight-2.log");
  EXPECT_EQ(max_difference(parameters_at("straight", 12), parameters_at("switch", 12)), 0.0);
}

// A worker killed mid-run: the other stops with one line naming it, within the (test-sized) timeout,
// and every checkpoint on disk is whole.
TEST_F(DistRunTest, AKilledWorkerStopsTheOtherNamingIt) {
  const int port = dist::free_loopback_port();
  auto args = train_args("killed", 100000, {"train.dist_timeout_s=20"});
  std::vector<std::unique_ptr<Process>> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    ranks.push_back(
        std::make_unique<Process>(args,
                                  std::map<std::string, std::string>{{"RANK", std::to_string(rank)},
                                                                     {"WORLD_SIZE", "2"},
                                                                     {"LOCAL_RANK", std::to_string(rank)},
                                                                     {"LOCAL_WORLD_SIZE", "2"},
                                                                     {"MASTER_ADDR", "127.0.0.1"},
                                                                     {"MASTER_PORT", std::to_string(port)}},
                                  dir_.path / fmt::format("rank-{}.log", rank)));
  }
  // Wait until training is under way (a checkpoint exists), then kill rank 1.
  const fs::path checkpoints = dir_.path / "killed" / "checkpoints";
  const auto deadline = std::chrono::steady_clock::now() + kRunLimit;
  while (CheckpointFiles::list(checkpoints.string()).size() < 2 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_GE(CheckpointFiles::list(checkpoints.string()).size(), 2u) << ranks[0]->output();
  ::kill(ranks[1]->pid(), SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  const auto code = ranks[0]->wait(std::chrono::seconds(60));
  ASSERT_TRUE(code.has_value()) << "rank 0 still running a minute after rank 1 died\n" << ranks[0]->output();
  EXPECT_NE(*code, 0);
  // train.dist_timeout_s = 20 bounds it; a dead peer is usually noticed at once.
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, std::chrono::seconds(20 + 15));
  const std::string output = ranks[0]->output();
  EXPECT_NE(output.find("rank 1 stopped responding"), std::string::npos) << output;
  for (const auto& [step, path] : CheckpointFiles::list(checkpoints.string()))
    EXPECT_NO_THROW(LoadedCheckpoint{path}) << path;
  for (const auto& entry : fs::directory_iterator(checkpoints))
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
}

// `qkv train --nproc 2` end to end: trains, only rank 0 writes the run's files, each rank has a log,
// and the checkpoint translates.
TEST_F(DistRunTest, NprocTrainsCheckpointsAndTranslates) {
  auto args = train_args("nproc", 6, {});
  args.insert(args.begin() + 3, {"--nproc", "2"});
  const std::string output = run_ok(args, "nproc.log");
  const fs::path run = dir_.path / "nproc";
  EXPECT_TRUE(fs::exists(run / "logs" / "rank-0.log"));
  EXPECT_TRUE(fs::exists(run / "logs" / "rank-1.log"));
  EXPECT_NE(output.find("[ckpt] saved"), std::string::npos) << output;
  std::ifstream rank1(run / "logs" / "rank-1.log");
  const std::string rank1_output{std::istreambuf_iterator<char>(rank1), std::istreambuf_iterator<char>()};
  EXPECT_NE(rank1_output.find("[dist] rank 1 of 2"), std::string::npos) << rank1_output;
  EXPECT_EQ(rank1_output.find("[ckpt] saved"), std::string::npos) << rank1_output;
  std::set<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(run))
    files.insert(fs::relative(entry.path(), run).string());
  const std::set<std::string> expected{
      "config.json",           "metrics.jsonl",        "vocab.txt",   "logs",
      "logs/rank-0.log",       "logs/rank-1.log",      "checkpoints", "checkpoints/step-2.pt",
      "checkpoints/step-4.pt", "checkpoints/step-6.pt"};
  EXPECT_EQ(files, expected);
  const std::string translated =
      run_ok({"translate", "--checkpoint", (run / "checkpoints" / "step-6.pt").string(), "--input",
              (dir_.path / "data" / "dev.src").string(), "--output", (dir_.path / "hyp.txt").string()},
             "translate.log");
  EXPECT_TRUE(fs::exists(dir_.path / "hyp.txt")) << translated;
}

}  // namespace
}  // namespace qkv

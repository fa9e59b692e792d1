// The qkv program under what users and hostile inputs do to it (issue 13): Ctrl-C during set-up, a save
// that the disk refuses, resuming with the command line that started a run, and hostile configs. Each
// must end in one line and the documented exit code: 2 for config errors (naming the file and key),
// 1 for runtime errors, 130 for a stop requested during set-up.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support.h"

namespace {
namespace fs = std::filesystem;
using qkv::test::TempDir;

struct Result {
  int code = -1;       // the exit status, or 128 + the signal that ended it
  std::string output;  // stdout and stderr together
};

// Runs `command` through the shell from the source directory (where configs/ lives), `qkv` standing
// for the built binary.
Result shell(const std::string& command) {
  const std::string full =
      fmt::format("cd '{}' && qkv='{}/qkv' && {{ {} ; }} 2>&1", QKV_SOURCE_DIR, QKV_BINARY_DIR, command);
  Result run;
  FILE* pipe = ::popen(full.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) run.output.append(buffer, n);
  const int status = ::pclose(pipe);
  run.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return run;
}

Result qkv(const std::string& args) {
  return shell("\"$qkv\" " + args);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The lines of `text` that start with "qkv: " (the program's error lines).
std::vector<std::string> error_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("qkv: ", 0) == 0) lines.push_back(line);
  return lines;
}

// Exactly one error line, and no libtorch backtrace anywhere.
::testing::AssertionResult one_error_line(const Result& run) {
  const auto lines = error_lines(run.output);
  if (lines.size() != 1 || contains(run.output, "Exception raised from") || contains(run.output, "frame #"))
    return ::testing::AssertionFailure() << "expected one error line, got:\n" << run.output;
  return ::testing::AssertionSuccess();
}

std::string tiny(const fs::path& dir, const std::string& run) {
  return fmt::format("--config configs/tiny.json --out '{}' --set data.dir='{}'", (dir / run).string(),
                     (dir / "data").string());
}

// ---- Ctrl-C during set-up (item 2) ------------------------------------------------------------------

// SIGINT while `qkv train` prepares its data ends it with 130 and one line, before anything is trained.
// The signal is sent once the corpus directory appears: by then main() runs and the handler is in
// place. (The ~0.3 s before main() are the dynamic loader's, loading libtorch; a signal there ends the
// process by the default action, as for any program, and no code of ours can run earlier.)
TEST(CliReliability, SigintDuringSetUpExitsCleanlyWithOneLine) {
  TempDir dir;
  const fs::path data = dir.path / "data";
  // A corpus large enough that generating it takes a while, so that the signal lands inside set-up.
  const std::string command = fmt::format(
      "cd '{}' && exec '{}/qkv' train --config configs/tiny.json --out '{}' --set data.dir='{}' "
      "--set data.train_size=20000 > '{}' 2>&1",
      QKV_SOURCE_DIR, QKV_BINARY_DIR, (dir.path / "run").string(), data.string(),
      (dir.path / "output.txt").string());
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(data) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_TRUE(fs::exists(data)) << "qkv train never started preparing its data";
  ::kill(child, SIGINT);
  int status = 0;
  ::waitpid(child, &status, 0);
  std::ifstream in(dir.path / "output.txt");
  const std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(WIFEXITED(status)) << "ended by signal " << WTERMSIG(status) << "\n" << output;
  EXPECT_EQ(WEXITSTATUS(status), 130) << output;
  const auto lines = error_lines(output);
  ASSERT_EQ(lines.size(), 1u) << output;
  EXPECT_TRUE(contains(lines[0], "qkv: SIGINT received during set-up")) << lines[0];
  EXPECT_TRUE(contains(lines[0], "nothing was trained or saved")) << lines[0];
  EXPECT_FALSE(fs::exists(dir.path / "run" / "checkpoints" / "step-10.pt"));
}

// ---- resuming with the command that started the run (item 7) ----------------------------------------

TEST(CliReliability, TheCommandThatStartedARunResumesIt) {
  TempDir dir;
  const std::string start =
      tiny(dir.path, "run") + " --set model.d_ff=128 --set train.steps=10 --no-final-eval";
  Result run = qkv("train " + start);
  ASSERT_EQ(run.code, 0) << run.output;
  // The same command line with --resume (as a user or a restarting launcher repeats it) continues...
  run = qkv("train " + start + " --resume --set train.steps=20");
  EXPECT_EQ(run.code, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "resumed from")) << run.output;
  EXPECT_TRUE(fs::exists(dir.path / "run" / "checkpoints" / "step-20.pt"));
  // ...while one that changes the architecture is refused, naming both values.
  run = qkv("train " + tiny(dir.path, "run") + " --set model.d_ff=256 --resume --set train.steps=30");
  EXPECT_EQ(run.code, 2) << run.output;
  EXPECT_TRUE(contains(run.output, "model.d_ff = 256 conflicts with the checkpoint's model.d_ff = 128"))
      << run.output;
}

// ---- a save that the disk refuses (item 3) -----------------------------------------------------------

// Under a file size limit (the shell's ulimit -f; qkv ignores SIGXFSZ so that the write fails with
// EFBIG) the step-20 save fails: exit 1, one line naming the file and the reason, no temporary left,
// and --resume continues from step 10.
TEST(CliReliability, ASaveTheDiskRefusesIsOneLineAndResumable) {
  TempDir dir;
  Result run = qkv("train " + tiny(dir.path, "run") + " --set train.steps=10 --no-final-eval");
  ASSERT_EQ(run.code, 0) << run.output;
  const fs::path checkpoints = dir.path / "run" / "checkpoints";
  const auto size = fs::file_size(checkpoints / "step-10.pt");
  // ulimit -f counts 512-byte blocks in dash and 1024-byte blocks in bash: half the checkpoint either way.
  run = shell(fmt::format("ulimit -f {} && \"$qkv\" train {} --resume --set train.steps=20 --no-final-eval",
                          size / 2048, tiny(dir.path, "run")));
  EXPECT_EQ(run.code, 1) << run.output;
  EXPECT_TRUE(one_error_line(run));
  const auto lines = error_lines(run.output);
  ASSERT_FALSE(lines.empty());
  EXPECT_TRUE(contains(lines[0], (checkpoints / "step-20.pt").string() + ": cannot save")) << lines[0];
  EXPECT_TRUE(contains(lines[0], "File too large")) << lines[0];
  EXPECT_TRUE(contains(lines[0], "step-10.pt is intact")) << lines[0];
  for (const auto& entry : fs::directory_iterator(checkpoints))
    EXPECT_FALSE(contains(entry.path().filename(), ".tmp-")) << "a temporary was left: " << entry.path();
  EXPECT_FALSE(fs::exists(checkpoints / "step-20.pt"));

  run = qkv("train " + tiny(dir.path, "run") + " --resume --set train.steps=20 --no-final-eval");
  EXPECT_EQ(run.code, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "resumed from " + (checkpoints / "step-10.pt").string())) << run.output;
}

// ---- hostile configs (item 4) ------------------------------------------------------------------------

class HostileConfig : public ::testing::Test {
 protected:
  // Writes `text` as a config file and returns its path.
  std::string config(const std::string& text) {
    const std::string path = (dir_.path / fmt::format("c{}.json", count_++)).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  // `qkv train` on it, into a fresh run directory (refused before anything is built, so it never
  // trains).
  Result train(const std::string& path, const std::string& sets = "") {
    const fs::path out = dir_.path / fmt::format("run{}", count_++);
    return qkv(fmt::format("train --config '{}' --out '{}' {}", path, out.string(), sets));
  }
  TempDir dir_;
  int count_ = 0;
};

// Every config error: exit 2, one line, naming the file and the key.
::testing::AssertionResult config_error(const Result& run, const std::string& file, const std::string& key) {
  if (run.code != 2)
    return ::testing::AssertionFailure() << "exit " << run.code << ", not 2:\n" << run.output;
  if (!one_error_line(run)) return one_error_line(run);
  const std::string line = error_lines(run.output)[0];
  if (!contains(line, file) || !contains(line, key))
    return ::testing::AssertionFailure() << "the error does not name " << file << " and " << key << ":\n"
                                         << line;
  return ::testing::AssertionSuccess();
}

TEST_F(HostileConfig, MalformedJsonIsRefusedNamingTheFile) {
  const std::string deep = config(std::string(100000, '[') + std::string(100000, ']'));
  EXPECT_TRUE(config_error(train(deep), deep, "nested deeper than 32 levels"));
  const std::string deep_object =
      config("{\"model\": " + std::string(50000, '[') + std::string(50000, ']') + "}");
  EXPECT_TRUE(config_error(train(deep_object), deep_object, "(at model"));
  const std::string duplicate = config(R"({"model": {"d_model": 64, "d_model": 128}})");
  EXPECT_TRUE(config_error(train(duplicate), duplicate, "duplicate key model.d_model"));
  const std::string nul = config(std::string("{\"model\": {}}\0garbage", 22));
  EXPECT_TRUE(config_error(train(nul), nul, "NUL byte"));
  const std::string trailing = config(R"({"model": {}} {"train": {}})");
  EXPECT_TRUE(config_error(train(trailing), trailing, "invalid JSON"));
}

TEST_F(HostileConfig, NumbersOutOfRangeNameTheKey) {
  const std::string huge = config(R"({"model": {"d_model": 1e400}})");
  EXPECT_TRUE(config_error(train(huge), huge, "model.d_model"));
  const std::string tiny = config(fmt::format(R"({{"extends": "{}/configs/tiny.json"}})", QKV_SOURCE_DIR));
  EXPECT_TRUE(config_error(train(tiny, "--set train.lr=1e308"), tiny, "train.lr"));
  // A --set error names the override (the command line is its source).
  EXPECT_TRUE(config_error(train(tiny, "--set train.lr=1e400"), "--set train.lr=1e400", "must be a number"));
  // Counted, not built: the parameter count must not wrap around into a negative number.
  const Result params =
      qkv(fmt::format("params --config '{}' --vocab-size 1000 --set model.d_ff=9223372036854775807", tiny));
  EXPECT_TRUE(config_error(params, tiny, "model.d_ff = 9223372036854775807"));
}

TEST_F(HostileConfig, SizesThisMachineCannotHoldAreRefusedBeforeBuilding) {
  const std::string base =
      config(fmt::format(R"({{"extends": "{}/configs/tiny.json", "data": {{"dir": "{}"}}}})", QKV_SOURCE_DIR,
                         (dir_.path / "data").string()));
  for (const auto& [set, key] : std::vector<std::pair<std::string, std::string>>{
           {"--set model.d_model=1048576 --set model.heads=2", "model.d_model = 1048576"},
           {"--set model.max_len=10000000000 --set train.max_tokens=10000000000", " = 10000000000"},
           {"--set decode.beam=1000000000", "decode.beam = 1000000000"},
           {"--set model.encoder_layers=1000000000", "model.encoder_layers = 1000000000"},
           {"--set train.update_freq=1000000000", "train.update_freq = 1000000000"},
       }) {
    const Result run = train(base, set);
    EXPECT_TRUE(config_error(run, base, key)) << set;
    EXPECT_TRUE(contains(run.output, "of memory")) << run.output;
    EXPECT_FALSE(fs::exists(dir_.path / "data")) << set << ": the corpus was generated before refusing";
  }
  // Sizes whose parameter count does not even fit in 64 bits are refused by validation, on any machine.
  const Result run = train(base, "--set model.d_model=2147483647 --set model.heads=1");
  EXPECT_TRUE(config_error(run, base, "model.d_model = 2147483647 makes the parameter count overflow"));
}

TEST_F(HostileConfig, HugeKeysAreEchoedTruncated) {
  // Under the 1 MiB a config may hold, the key is echoed in part, with its size.
  const std::string key(500000, 'k');
  const std::string file = config("{\"model\": {\"" + key + "\": 1}}");
  Result run = train(file);
  EXPECT_TRUE(config_error(run, file, "unknown key \"model.kkkk")) << run.output.substr(0, 1000);
  EXPECT_TRUE(contains(run.output, "(500006 bytes)")) << run.output.substr(0, 1000);
  EXPECT_LT(run.output.size(), 1000u) << "the key was echoed whole";
  // A 10 MB file is not a config: refused on its size, before it is parsed.
  const std::string huge = config("{\"model\": {\"" + std::string(10 << 20, 'k') + "\": 1}}");
  run = train(huge);
  EXPECT_TRUE(config_error(run, huge, "is not a config file")) << run.output.substr(0, 1000);
  // The same through --set (one argument may hold 128 KiB).
  const std::string small = config(R"({"model": {}})");
  run = train(small, "--set 'model." + std::string(100000, 'x') + "=1'");
  EXPECT_TRUE(config_error(run, "--set model.xxxx", "unknown key")) << run.output.substr(0, 1000);
  EXPECT_LT(run.output.size(), 1000u);
}

}  // namespace

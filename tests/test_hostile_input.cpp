// Hostile and broken input, in-process (issue 13): strict JSON (config/json_input.h), checked counts
// (base/checked.h, base/parameter_count.h), the resource checks (config/resources.h), messages as one
// line (base/error.h) and crafted checkpoints, keep_checkpoints = 0, and training files that
// filtering empties.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "base/checked.h"
#include "base/error.h"
#include "base/parameter_count.h"
#include "checkpoint/checkpoint.h"
#include "config/json_input.h"
#include "config/load.h"
#include "config/resources.h"
#include "data/dataset.h"
#include "support.h"

namespace qkv {
namespace {
namespace fs = std::filesystem;
using test::TempDir;

// The ConfigError of `f`, or "" when there was none.
template <class F>
std::string config_error(F f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ---- strict JSON -------------------------------------------------------------------------------------

TEST(StrictJson, RefusesWhatNlohmannAccepts) {
  EXPECT_EQ(parse_json_strictly(R"({"a": {"b": [1, 2]}})", "f.json")["a"]["b"][1], 2);
  std::string error =
      config_error([] { parse_json_strictly(R"({"model": {"d_model": 1, "d_model": 2}})", "f.json"); });
  EXPECT_EQ(error, "f.json: invalid JSON: duplicate key model.d_model (each key may appear once)");
  // The same key in different objects is fine.
  EXPECT_NO_THROW(parse_json_strictly(R"({"model": {"seed": 1}, "train": {"seed": 2}})", "f.json"));
  error = config_error([] { parse_json_strictly(std::string("{}\0{}", 5), "f.json"); });
  EXPECT_TRUE(contains(error, "f.json: invalid JSON: a NUL byte at byte 2")) << error;
  error = config_error([] { parse_json_strictly(R"({"a": 1} x)", "f.json"); });
  EXPECT_TRUE(contains(error, "f.json: invalid JSON: parse error at line 1, column 10")) << error;
}

TEST(StrictJson, LimitsDepthWithoutRecursing) {
  const std::string nested = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_NO_THROW(parse_json_strictly(nested, "f.json"));
  const std::string deeper = "[" + nested + "]";
  EXPECT_TRUE(
      contains(config_error([&] { parse_json_strictly(deeper, "f.json"); }), "nested deeper than 32"));
  // Far deeper than any stack could recurse: refused at depth 33, never built.
  const std::string abyss = std::string(1000000, '[') + std::string(1000000, ']');
  EXPECT_TRUE(contains(config_error([&] { parse_json_strictly(abyss, "f.json"); }), "nested deeper than 32"));
}

TEST(StrictJson, NumbersBeyondADoubleNameTheirKey) {
  const std::string error =
      config_error([] { parse_json_strictly(R"({"model": {"d_model": 1e400}})", "f.json"); });
  EXPECT_TRUE(contains(error, "f.json: invalid JSON (at model.d_model): number overflow parsing '1e400'"))
      << error;
}

TEST(Excerpt, CutsLongTextAndEscapesControls) {
  EXPECT_EQ(excerpt("short"), "short");
  EXPECT_EQ(excerpt(std::string(100, 'k'), 8), "kkkkkkkk... (100 bytes)");
  EXPECT_EQ(excerpt("a\nb"), "a\\x0ab");  // a newline would break the message's one line
  EXPECT_EQ(excerpt("\xc3\xa4\xc3\xa4", 3), "\xc3\xa4... (4 bytes)");  // never half a UTF-8 character
  EXPECT_EQ(excerpt_json(nlohmann::json(std::string(1000, 'v')), 4), "\"vvvv... (1000 bytes)\"");
}

TEST(OneLine, DropsLibtorchBacktracesAndLineBreaks) {
  EXPECT_EQ(
      one_line("PytorchStreamReader failed reading zip archive: failed finding central directory\n"
               "Exception raised from valid at ../caffe2/serialize/inline_container.cc:184 (most recent "
               "call first):\nframe #0: c10::Error::Error(...)"),
      "PytorchStreamReader failed reading zip archive: failed finding central directory");
  EXPECT_EQ(one_line("Error(s) in loading:\n\tsize mismatch\n"), "Error(s) in loading: size mismatch");
  EXPECT_EQ(one_line(std::string(50, 'x'), 10), "xxxxxxxxxx...");
}

// A crafted archive with a valid checksum reaches libtorch's reader, whose errors carry a C++
// backtrace: the CheckpointError keeps one line of it (it once printed "Exception raised from ...
// frame #0 ...").
TEST(CraftedCheckpoints, LibtorchErrorsBecomeOneLine) {
  TempDir dir;
  const std::string good = (dir.path / "good.pt").string();
  save_checkpoint(good, *torch::nn::Linear(3, 2), nullptr, {{"step", 1}});
  std::ifstream in(good, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string body = file.substr(8, file.size() - 8 - 24);
  EXPECT_EQ(checkpoint_file_bytes(body), file);
  std::string flipped = body;
  for (size_t i = 0; i < flipped.size(); i += 97) flipped[i] = static_cast<char>(flipped[i] ^ 0x5a);
  for (const std::string& crafted : {body.substr(0, body.size() / 2), flipped, std::string("not a zip")}) {
    const std::string path = (dir.path / "crafted.pt").string();
    std::ofstream(path, std::ios::binary) << checkpoint_file_bytes(crafted);
    try {
      LoadedCheckpoint checkpoint(path);
      ADD_FAILURE() << "a crafted archive was accepted";
    } catch (const CheckpointError& e) {
      const std::string what = e.what();
      EXPECT_TRUE(contains(what, "crafted.pt: truncated or corrupt checkpoint (unreadable archive: "))
          << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
      EXPECT_FALSE(contains(what, "Exception raised from")) << what;
    }
  }
}

// The class declarations inside an archive are parsed and compiled by libtorch, whose parser crashed
// on a crafted one (tests/fuzz/fuzz_checkpoint_file): anything but the plain attribute declarations
// that qkv's archives hold is refused first, naming the record and line. The archive's records are
// stored uncompressed and libtorch does not check their CRCs, so an edit of the same length keeps it a
// readable archive.
TEST(CraftedCheckpoints, ClassDeclarationsOtherThanAttributesAreRefused) {
  TempDir dir;
  const std::string good = (dir.path / "good.pt").string();
  save_checkpoint(good, *torch::nn::Linear(3, 2), nullptr, {{"step", 1}});
  std::ifstream in(good, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string body = file.substr(8, file.size() - 8 - 24);
  const size_t at = body.find("__buffers__ = []");
  ASSERT_NE(at, std::string::npos);
  body.replace(at, 16, "__buffers__ = 1+");
  const std::string path = (dir.path / "crafted.pt").string();
  std::ofstream(path, std::ios::binary) << checkpoint_file_bytes(body);
  try {
    LoadedCheckpoint checkpoint(path);
    ADD_FAILURE() << "a crafted class declaration was accepted";
  } catch (const CheckpointError& e) {
    const std::string what = e.what();
    EXPECT_TRUE(contains(what, "crafted.pt: truncated or corrupt checkpoint (unreadable archive: code/"))
        << what;
    EXPECT_TRUE(
        contains(what, "code/__torch__.py line 3: not a plain attribute declaration:   __buffers__ = 1+)"))
        << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

// The archive's zip directory and pickles are checked before libtorch reads them (archive_check.h):
// libtorch allocates what a string's length or a record's directory entry claims. Both edits keep the
// archive's length, so it stays readable as a zip file.
TEST(CraftedCheckpoints, ClaimedSizesBeyondTheArchiveAreRefused) {
  TempDir dir;
  const std::string good = (dir.path / "good.pt").string();
  save_checkpoint(good, *torch::nn::Linear(3, 2), nullptr, {{"step", 1}});
  std::ifstream in(good, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string body = file.substr(8, file.size() - 8 - 24);
  auto error_of = [&](const std::string& crafted) -> std::string {
    const std::string path = (dir.path / "crafted.pt").string();
    std::ofstream(path, std::ios::binary) << checkpoint_file_bytes(crafted);
    try {
      LoadedCheckpoint checkpoint(path);
    } catch (const CheckpointError& e) {
      return e.what();
    }
    return "";
  };

  std::string long_string = body;  // BINUNICODE "storage" claiming 4 GiB
  const size_t storage = long_string.find(std::string("X\x07\x00\x00\x00storage", 12));
  ASSERT_NE(storage, std::string::npos);
  long_string.replace(storage + 1, 4, "\xff\xff\xff\xff");
  std::string error = error_of(long_string);
  EXPECT_TRUE(
      contains(error, "crafted.pt: truncated or corrupt checkpoint (unreadable archive: data.pkl byte "))
      << error;
  EXPECT_TRUE(contains(error, ": 4294967295 bytes claimed, ")) << error;

  std::string large = body;  // the first directory entry claims 4 GiB - 2 bytes
  const size_t entry = large.find("PK\x01\x02");
  ASSERT_NE(entry, std::string::npos);
  large.replace(entry + 20, 8, "\xfe\xff\xff\xff\xfe\xff\xff\xff");
  error = error_of(large);
  EXPECT_TRUE(contains(error, "is neither stored within the archive nor a small deflated one (method "))
      << error;
  EXPECT_TRUE(contains(error, ", 4294967294 bytes)")) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
}

// ---- checked counts ----------------------------------------------------------------------------------

TEST(CheckedCount, OverflowSticksAndSaturates) {
  const CheckedCount big = std::numeric_limits<int64_t>::max() / 2 + 1;
  EXPECT_FALSE((big + CheckedCount(1)).overflowed());
  EXPECT_TRUE((big * CheckedCount(2)).overflowed());
  EXPECT_TRUE((big * CheckedCount(2) + CheckedCount(0)).overflowed());  // sticks through later steps
  EXPECT_EQ((big * CheckedCount(2)).value(), std::numeric_limits<int64_t>::max());
  EXPECT_TRUE(CheckedCount(-1).overflowed());
  EXPECT_EQ((CheckedCount(6) * CheckedCount(7)).value(), 42);
}

TEST(ParameterCount, OverflowIsFlaggedNotWrapped) {
  ModelConfig m;
  m.d_ff = std::numeric_limits<int64_t>::max();  // `qkv params` once printed negative counts for this
  EXPECT_TRUE(parameter_count_formula(m, 100, 100).overflowed);
  m.d_ff = 2048;
  const ParameterCount base = parameter_count_formula(m, 37000, 37000);
  EXPECT_FALSE(base.overflowed);
  EXPECT_EQ(base.total(), 63082496);  // the paper's base model (aiayn.md)
}

// ---- resources ---------------------------------------------------------------------------------------

TEST(Resources, ValidateRefusesCountsBeyondSixtyFourBits) {
  Config c;
  c.model.d_ff = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(config_error([&] { validate(c, "f.json"); }),
            "f.json: model.d_ff = 9223372036854775807 makes the parameter count overflow 64 bits; lower it");
  c = Config{};
  c.model.d_model = 2147483647;
  c.model.heads = 1;
  EXPECT_TRUE(contains(config_error([&] { validate(c, "f.json"); }), "model.d_model = 2147483647 makes"));
}

TEST(Resources, NamesTheKeyThatDoesNotFitAndTheEstimate) {
  constexpr uint64_t kGiB = uint64_t{1} << 30;
  Config c;  // the paper's base model fits in 16 GiB...
  EXPECT_NO_THROW(check_fits_in_memory(c, 37000, 37000, true, "f.json", 16 * kGiB));
  // ...not in 100 MiB: its 63M parameters alone take 1 GiB with gradients and Adam's moments.
  std::string error = config_error([&] { check_fits_in_memory(c, 37000, 37000, true, "f.json", 100 << 20); });
  EXPECT_TRUE(contains(error, "f.json: ")) << error;
  EXPECT_TRUE(contains(error, "training needs at least")) << error;
  EXPECT_TRUE(contains(error, "more than the 100.0 MiB available")) << error;

  const std::vector<std::pair<std::function<void(Config&)>, std::string>> culprits = {
      {[](Config& x) { x.model.encoder_layers = 1000000000; }, "model.encoder_layers = 1000000000: training"},
      {[](Config& x) { x.train.update_freq = 1000000000; }, "train.update_freq = 1000000000: training"},
      {[](Config& x) { x.model.d_model = 1 << 20; }, "model.d_model = 1048576: training"},
      {[](Config& x) { x.decode.beam = 1000000000; }, "decode.beam = 1000000000: decoding"},
  };
  for (const auto& [change, fragment] : culprits) {
    Config x;
    change(x);
    error = config_error([&] { check_fits_in_memory(x, 37000, 37000, true, "f.json", 16 * kGiB); });
    EXPECT_TRUE(contains(error, fragment)) << error;
    EXPECT_TRUE(contains(error, "lower ")) << error;
  }
  // Decoding alone (qkv translate) does not count training's memory.
  Config big_batch;
  big_batch.train.max_tokens = int64_t{1} << 40;
  EXPECT_NO_THROW(check_fits_in_memory(big_batch, 37000, 37000, false, "f.json", 16 * kGiB));
  EXPECT_NE(config_error([&] { check_fits_in_memory(big_batch, 37000, 37000, true, "f.json", 16 * kGiB); }),
            "");
}

TEST(Resources, FormatsBytes) {
  EXPECT_EQ(format_bytes(CheckedCount(512)), "512 bytes");
  EXPECT_EQ(format_bytes(CheckedCount(int64_t{3} << 30)), "3.0 GiB");
  EXPECT_EQ(format_bytes(CheckedCount(-1)), "more than 8 EiB");
}

// ---- checkpoints kept, and empty training data (item 6) -------------------------------------------

TEST(KeepCheckpoints, ZeroKeepsThemAll) {
  TempDir dir;
  for (int step : {1, 2, 3}) std::ofstream(CheckpointFiles::step_path(dir.path.string(), step)) << "x";
  CheckpointFiles::prune(dir.path.string(), 0);
  EXPECT_EQ(CheckpointFiles::list(dir.path.string()).size(), 3u);  // configs/README.md: 0 keeps all
  CheckpointFiles::prune(dir.path.string(), 1);
  ASSERT_EQ(CheckpointFiles::list(dir.path.string()).size(), 1u);
  EXPECT_EQ(CheckpointFiles::list(dir.path.string())[0].first, 3);
}

TEST(EmptyTrainingData, NamesTheFilesAndTheFilter) {
  TempDir dir;
  DataConfig data;
  data.task = DataTask::Files;
  data.dir = dir.path.string();
  data.max_len = 3;
  const auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir.path / name, std::ios::binary) << text;
  };
  write("train.src", "\n \n\t\n");  // blank after cleaning
  write("train.tgt", "a\nb\nc\n");
  std::ostringstream log;
  try {
    build_codecs(data, log);
    ADD_FAILURE() << "blank training files were accepted";
  } catch (const DataError& e) {
    const std::string what = e.what();
    EXPECT_TRUE(
        contains(what, (dir.path / "train.src").string() + " and " + (dir.path / "train.tgt").string()))
        << what;
    EXPECT_TRUE(contains(what, "all 3 were dropped (3 with an empty side")) << what;
  }
  write("train.src", "a b c d e\nf g h i\n");  // every pair longer than data.max_len
  write("train.tgt", "a\nb\n");
  try {
    build_codecs(data, log);
    ADD_FAILURE() << "training files that the length filter empties were accepted";
  } catch (const DataError& e) {
    EXPECT_TRUE(contains(e.what(), "2 with a side longer than 3 tokens")) << e.what();
  }
}

}  // namespace
}  // namespace qkv

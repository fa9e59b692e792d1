// A user's program against an installed qkv (see CMakeLists.txt here): builds a small Transformer
// from qkv::core and runs a forward pass, calls the attention operator of qkv::ops against its
// definition, and trains a tiny SentencePiece model, which loads the shim libqkv_spm.so. Its one
// argument is the install prefix: the shim must have been found there, beside libqkv_core.so,
// not in the build tree. Prints what it checked; exits non-zero on the first failure.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include <torch/torch.h>

#include "base/config.h"
#include "data/sentencepiece.h"
#include "model/transformer.h"
#include "ops/attention.h"

namespace {

namespace fs = std::filesystem;

int fail(const std::string& what) {
  std::cerr << "[consumer] FAILED: " << what << "\n";
  return 1;
}

}  // namespace

int run(int argc, char** argv) {
  if (argc != 3) return fail("usage: qkv_consumer PREFIX SCRATCH_DIR");
  const fs::path prefix = fs::canonical(argv[1]);
  const fs::path scratch = argv[2];

  // qkv::core: a model from a config; its parameter count equals the arithmetic.
  qkv::ModelConfig config;
  config.d_model = 16, config.d_ff = 32, config.heads = 2;
  config.encoder_layers = config.decoder_layers = 1;
  config.max_len = 16;
  torch::manual_seed(0);
  qkv::Transformer model(config, 30, 30);
  if (model->num_parameters() != qkv::count_parameters(config, 30, 30))
    return fail("built model's parameter count differs from count_parameters");
  const auto src = torch::randint(4, 30, {2, 5});     // [B, S]
  const auto tgt_in = torch::randint(4, 30, {2, 4});  // [B, T]
  const auto logits = model->forward(src, tgt_in);    // [B, T, V]
  if (logits.sizes() != torch::IntArrayRef({2, 4, 30})) return fail("logits shape");
  std::cout << "[consumer] Transformer: " << model->num_parameters() << " parameters, logits "
            << logits.sizes() << "\n";

  // qkv::ops: the attention operator against softmax(Q Kᵀ / √Dk) V in float64.
  const auto q = torch::randn({1, 2, 3, 8}, torch::kDouble);  // [B, H, Tq, Dk]
  const auto k = torch::randn({1, 2, 5, 8}, torch::kDouble);  // [B, H, Tk, Dk]
  const auto v = torch::randn({1, 2, 5, 4}, torch::kDouble);  // [B, H, Tk, Dv]
  const auto expected = torch::softmax(q.matmul(k.transpose(-2, -1)) / std::sqrt(8.0), -1).matmul(v);
  const double error = (qkv::attention(q, k, v) - expected).abs().max().item<double>();
  if (!(error < 1e-12)) return fail("attention differs from its definition by " + std::to_string(error));
  std::cout << "[consumer] attention: max error " << error << " against the definition\n";

  // SentencePiece through the shim, which libqkv_core.so finds beside itself.
  fs::create_directories(scratch);
  {
    std::ofstream text(scratch / "text.txt");
    for (int i = 0; i < 200; ++i) text << "the cat sat on the mat number " << i % 17 << " today\n";
  }
  qkv::SpmTrainOptions options;
  options.vocab_size = 40;
  options.threads = 1;
  qkv::train_sentencepiece({(scratch / "text.txt").string()}, (scratch / "spm").string(), options);
  const qkv::SentencePiece spm((scratch / "spm.model").string());
  const std::string line = "the cat sat on the mat";
  if (spm.decode(spm.encode(line)) != line) return fail("SentencePiece round trip");
  const fs::path shim = fs::canonical(qkv::sentencepiece_library_path());
  if (shim.string().rfind(prefix.string() + "/", 0) != 0)
    return fail("libqkv_spm.so loaded from " + shim.string() + ", outside the prefix " + prefix.string());
  std::cout << "[consumer] SentencePiece: shim " << shim.string() << "\n";
  std::cout << "[consumer] ok\n";
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

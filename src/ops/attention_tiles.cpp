// How the tiled attention implementations cut and share out the work: the tile plan, the balance of
// the runs over the threads, a tile's mask and scores (see attention_tiles.h).
//
// Dimensions: N = batch·heads, Tq, Tk = query and key lengths, Dk = width; a tile has n heads, bq
// query rows and bk keys.
#include "ops/attention_tiles.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>

#include <torch/torch.h>

#include "ops/gemm.h"

namespace qkv::detail {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Query rows per block of a causal problem, and the rows per stair of its diagonal square
// (visible_blocks). The keys every row of a block sees go through products over all its rows; only
// the square across the diagonal is cut into stairs, each computed up to its last row's horizon, so
// the computed scores exceed the triangle by half a stair per row (a fraction stair/Tq of the useful
// work). Blocks of about a quarter of the queries (64 to 256 rows) keep most of the work in large
// products; 64-row stairs were faster than 32 (smaller products) and than 128 (more waste), measured
// forward+backward at Tq = 512 and 1024 with Dk = 64.
int64_t causal_rows(int64_t tq) {
  int64_t rows = 64;
  while (rows < 256 && rows * 4 < tq) rows *= 2;
  return std::min(rows, tq);
}
constexpr int64_t kStairRows = 64;

}  // namespace

TilePlan plan_tiles(const Problem& pr, AttentionKind kind) {
  // On the CPU a score tile of 2 MiB (one L2 cache's worth, well inside the shared L3) lets the
  // elementwise passes over it (mask, softmax, gradient) run from cache between the matrix
  // products, while keeping those products large enough for BLAS to run near its peak (0.5 to
  // 8 MiB measured within noise of each other; 32 MiB, i.e. no tiling, was slower). On a GPU a
  // kernel launch costs as much as a small tile's work: tiles there are as large as memory
  // comfortably allows, which for the usual sizes means a single tile.
  constexpr int64_t kCpuTileBytes = int64_t{2} << 20;
  constexpr int64_t kDeviceTileBytes = int64_t{256} << 20;
  constexpr int64_t kCpuKeyBlock = 256, kDeviceKeyBlock = 4096;
  const bool cpu = pr.q.is_cpu();
  const int64_t score_bytes = static_cast<int64_t>(c10::elementSize(pr.acc().dtype().toScalarType()));
  const int64_t elems = (cpu ? kCpuTileBytes : kDeviceTileBytes) / score_bytes;  // per score tile
  const int64_t n = std::max<int64_t>(pr.n(), 1);
  const int64_t tq = std::max<int64_t>(pr.tq(), 1), tk = std::max<int64_t>(pr.tk(), 1);
  TilePlan plan;
  plan.keys =
      kind == AttentionKind::Standard ? tk : std::min<int64_t>(tk, cpu ? kCpuKeyBlock : kDeviceKeyBlock);
  // A causal problem in row blocks that follow the diagonal; otherwise whole heads when one fits (a
  // contiguous tile), else as many rows as fit.
  plan.rows = pr.causal && cpu ? causal_rows(tq)
                               : std::clamp<int64_t>(elems / plan.keys, std::min<int64_t>(tq, 16), tq);
  // On a GPU the diagonal square is one rectangle (a stair of the whole block): small products cost
  // more in launches than the masked scores they save.
  plan.stair = cpu ? std::min(kStairRows, plan.rows) : plan.rows;
  plan.heads = std::clamp<int64_t>(elems / (plan.keys * plan.rows), 1, n);
  // At least two head groups per thread when there are heads enough, so that balance_tiles has pieces
  // to even out (the backward runs a head group on one thread).
  if (cpu) plan.heads = std::min(plan.heads, std::max<int64_t>(1, n / (2 * at::get_num_threads())));
  return plan;
}

std::vector<TileRun> tile_runs(const Problem& pr, const TilePlan& plan, TileOrder order) {
  struct Piece {
    TileRun run;
    int64_t work;  // the scores it computes
  };
  std::vector<Piece> pieces;
  for (int64_t n0 = 0; n0 < pr.n(); n0 += plan.heads) {
    const int64_t n1 = std::min(n0 + plan.heads, pr.n());
    for (int64_t i0 = 0; i0 < pr.tq(); i0 += plan.rows) {
      const int64_t i1 = std::min(i0 + plan.rows, pr.tq());
      int64_t work = 0;
      for (const auto& t : visible_blocks(pr, plan, n0, n1, i0, i1))
        work += (n1 - n0) * (t.i1 - t.i0) * (t.j1 - t.j0);
      if (order == TileOrder::RowsInOrder && i0 > 0) {  // one run per head group
        pieces.back().run.i_end = i1;
        pieces.back().work += work;
      } else {
        pieces.push_back({{n0, n1, i0, i1}, work});
      }
    }
  }
  std::stable_sort(pieces.begin(), pieces.end(),
                   [](const Piece& a, const Piece& b) { return a.work > b.work; });
  std::vector<TileRun> runs;
  runs.reserve(pieces.size());
  for (const auto& p : pieces) runs.push_back(p.run);
  return runs;
}

std::vector<Tile> visible_blocks(const Problem& pr, const TilePlan& plan, int64_t n0, int64_t n1, int64_t i0,
                                 int64_t i1, bool skip_padded) {
  std::vector<Tile> blocks;
  // Keys [j0, j1) for rows [r0, r1), in blocks of plan.keys, without the blocks that are all padding.
  auto add = [&](int64_t r0, int64_t r1, int64_t j0, int64_t j1) {
    for (int64_t k0 = j0; k0 < j1; k0 += plan.keys) {
      const int64_t k1 = std::min(k0 + plan.keys, j1);
      if (!skip_padded || !pr.all_padded(n0, n1, k0, k1)) blocks.push_back({n0, n1, r0, r1, k0, k1});
    }
  };
  const int64_t end = pr.visible_end(n0, n1, i1);  // no row sees a key past it
  // The keys before the first row's diagonal, all its rows see (query i sees keys j < key_end(i + 1)).
  // The first row's own diagonal key goes with the stairs: the square then starts on a key-block
  // boundary, instead of leaving a one-key rectangle over all the block's rows.
  const int64_t shared = pr.causal ? std::min(pr.key_end(i0), end) : end;
  add(i0, i1, 0, shared);
  if (shared < end) {
    for (int64_t r0 = i0; r0 < i1; r0 += plan.stair) {
      const int64_t r1 = std::min(r0 + plan.stair, i1);
      add(r0, r1, shared, std::min(pr.key_end(r1), end));
    }
  }
  return blocks;
}

torch::Tensor tile_bias(const Problem& pr, const Tile& t) {
  torch::Tensor bias;
  if (pr.pad_bias.defined()) bias = pr.pad_bias.slice(0, t.n0, t.n1).slice(2, t.j0, t.j1);  // [n, 1, bk]
  // Causal: only a block that reaches past the first row's horizon hides anything.
  if (pr.causal && t.j1 - 1 > t.i0 + pr.offset) {
    const auto ints = pr.acc().dtype(torch::kLong);
    auto horizon = torch::arange(t.i0, t.i1, ints).add_(pr.offset).unsqueeze(1);  // [bq, 1]
    auto keys = torch::arange(t.j0, t.j1, ints).unsqueeze(0);                     // [1, bk]
    auto causal = torch::zeros({t.i1 - t.i0, t.j1 - t.j0}, pr.acc())
                      .masked_fill_(keys.gt(horizon), kNegInf);  // [bq, bk]
    bias = bias.defined() ? bias + causal : causal;              // [n, bq, bk] or [bq, bk]
  }
  return bias;
}

void tile_scores(const Problem& pr, const Tile& t, torch::Tensor& out) {
  auto q = pr.q.slice(0, t.n0, t.n1).slice(1, t.i0, t.i1);  // [n, bq, Dk]
  auto k = pr.k.slice(0, t.n0, t.n1).slice(1, t.j0, t.j1);  // [n, bk, Dk]
  batched_gemm(false, true, q, k, out, pr.scale);           // [n, bq, bk] = scale·Q Kᵀ
}

void softmax_rows_(torch::Tensor& s) {
  // Subtracting the row maximum keeps exp() finite; a fully masked row has maximum -inf, which is
  // replaced by 0 so that the row becomes exp(-inf) = 0 everywhere instead of NaN.
  auto m = s.amax(-1, /*keepdim=*/true);  // [.., rows, 1]
  m.masked_fill_(m.isneginf(), 0.0);
  s.sub_(m).exp_();
  auto sum = s.sum(-1, /*keepdim=*/true);  // [.., rows, 1]
  s.mul_(sum.reciprocal().masked_fill_(sum.eq(0.0), 0.0));
}

}  // namespace qkv::detail

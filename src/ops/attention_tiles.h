// How the tiled attention implementations (standard, memory_efficient) cut the score matrix and run
// the pieces: a tile is heads × query rows × keys; a plan sizes them; the threads get runs of tiles
// of about equal work; the passes over a tile's rows apply the mask and the softmax between its
// matrix products.
//
// Masked work is skipped rather than masked: a block of query rows only ever sees the keys before
// Problem::visible_end (the causal diagonal of its last row, the padding that ends its sequences), and
// within those the causal mask touches only the rows whose own horizon ends inside the tile. A causal
// row block is computed as the rectangles of visible_blocks: the keys all its rows see, in one
// product per key block over all its rows, then the square that crosses the diagonal as a staircase
// of narrower row blocks (each up to its own last row's horizon), so that the products stay large
// while the computed scores exceed the triangle by only half a stair per row.
//
// Dimensions: N = batch·heads, Tq, Tk = query and key lengths; a tile has n heads, bq query rows
// and bk keys.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/types.h>

#include "base/config.h"
#include "ops/attention_internal.h"

namespace qkv::detail {

// Heads [n0, n1) × query rows [i0, i1) × keys [j0, j1).
struct Tile {
  int64_t n0, n1, i0, i1, j0, j1;
};

// How the score matrix is cut: heads in groups of `heads`, query rows in blocks of `rows`, keys in
// blocks of `keys` (the standard implementation takes every visible key at once), and the square
// that crosses the causal diagonal in stairs of `stair` rows (visible_blocks).
struct TilePlan {
  int64_t heads, rows, keys, stair;
};
TilePlan plan_tiles(const Problem& pr, AttentionKind kind);

// Whether the query blocks of a head group may run on different threads (forward) or must run on one,
// in order (backward: they add into the same dK and dV).
enum class TileOrder { RowsIndependent, RowsInOrder };

// What one thread runs: the query blocks starting in [i_begin, i_end) of heads [n0, n1).
struct TileRun {
  int64_t n0, n1, i_begin, i_end;
};

// The plan's runs, largest first (by the scores each computes, which the causal mask and the padding
// make uneven): the order in which the threads take them, each its next run when it finishes one.
std::vector<TileRun> tile_runs(const Problem& pr, const TilePlan& plan, TileOrder order);

// Calls f(n0, n1, i0, i1) for every tile of heads [n0, n1) × query rows [i0, i1).
//
// On the CPU the runs go in parallel, one list per ATen thread, and each tile's matrix products run
// single-threaded inside it (oneDNN, like ATen's own ops, does not fan out again inside a parallel
// region): a few large independent pieces instead of many small products each split across the
// cores. On a GPU the tiles are issued in order from the calling thread (kernels are asynchronous).
template <class F>
void for_each_tile(const Problem& pr, const TilePlan& plan, TileOrder order, F&& f) {
  auto run = [&](const TileRun& r) {
    // The tiles' views and products are the kernel's own work, under its autograd Function: they
    // skip the autograd and view-tracking layers of the dispatcher (a few µs per operation, and a
    // causal tile takes dozens of views). Thread-local, hence set on each thread that runs tiles.
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t i0 = r.i_begin; i0 < r.i_end; i0 += plan.rows) {
      f(r.n0, r.n1, i0, std::min(i0 + plan.rows, pr.tq()));
    }
  };
  const auto runs = tile_runs(pr, plan, order);
  const int64_t count = static_cast<int64_t>(runs.size());
  const int threads = pr.q.is_cpu() && !at::in_parallel_region() ? at::get_num_threads() : 1;
  if (threads <= 1 || count <= 1) {
    for (const auto& r : runs) run(r);
    return;
  }
  // Largest first, each thread taking the next run when it finishes one: the work estimate counts
  // scores, and a narrow stair costs more per score than a wide block, so the threads even out by
  // taking, not by a plan made in advance.
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(threads, count), 1, [&](int64_t begin, int64_t end) {
    for (int64_t worker = begin; worker < end; ++worker) {
      for (int64_t r = next++; r < count; r = next++) run(runs[static_cast<size_t>(r)]);
    }
  });
}

// The rectangles of heads [n0, n1) × query rows [i0, i1) that hold every score those rows can see,
// in the order an online softmax may visit them (each row meets its keys in increasing order):
//   1. the keys every row of the block sees, in blocks of plan.keys, over all the rows;
//   2. causal only, the keys that only some rows see (the square across the diagonal), as stairs of
//      plan.stair rows, each up to its last row's horizon, in blocks of plan.keys.
// Key blocks that are padding for every head are left out when `skip_padded`; an empty list means no
// row sees a key. The rectangles cover the visible scores exactly once; a stair's last keys still
// need the causal mask, which the row passes apply from the rectangle's own bounds.
std::vector<Tile> visible_blocks(const Problem& pr, const TilePlan& plan, int64_t n0, int64_t n1, int64_t i0,
                                 int64_t i1, bool skip_padded = true);

// Whether the row passes below work on one rectangle of a tile without reading the others (the fused
// CPU passes read only each row's visible keys; the generic ones read whole rows).
bool row_passes_read_visible_keys_only(const Problem& pr);

// The additive mask of a tile (0 = visible, -inf = hidden), broadcastable to [n, bq, bk]; undefined
// when the tile hides nothing.
torch::Tensor tile_bias(const Problem& pr, const Tile& t);

// Scores S = scale·Q Kᵀ of a tile, without its mask (the row passes apply it), written into `out`
// [n, bq, bk] in the accumulation dtype.
void tile_scores(const Problem& pr, const Tile& t, torch::Tensor& out);

// A row-wise softmax in place that yields zeros (not NaN) for a row whose scores are all -inf.
void softmax_rows_(torch::Tensor& s);

// --- the row passes (attention_rows.cpp): s, p, dp are [n, bq, bk] tiles in the accumulation dtype
// with contiguous rows; m, l, lse, d are [n, bq, 1], acc [n, bq, Dv] (m, l and acc may be row slices
// of a larger block's) ---------------------------------------------------------------------------

// P = softmax(S + mask) in place; a row without a visible key becomes 0.
void softmax_tile(const Problem& pr, const Tile& t, torch::Tensor& s);
// One key block of the online softmax: with S_j + mask in s, m' = max(m, rowmax), s = exp(S_j − m')
// (0 where hidden), ℓ = ℓ·exp(m − m') + rowsum s, acc = acc·exp(m − m'), m = m'.
void online_softmax_tile(const Problem& pr, const Tile& t, torch::Tensor& s, torch::Tensor& m,
                         torch::Tensor& l, torch::Tensor& acc);
// P = exp(S + mask − L) in place, L the row's log-sum-exp (0 where hidden).
void exp_minus_lse_tile(const Problem& pr, const Tile& t, torch::Tensor& s, const torch::Tensor& lse);
// dS = P ∘ (dP − D) in place of dP; P in the accumulation dtype or the inputs'.
void ds_tile(const Problem& pr, torch::Tensor& dp, const torch::Tensor& p, const torch::Tensor& d);

}  // namespace qkv::detail

#!/usr/bin/python3
"""The PyTorch peer of `qkv bench decode`: the same Transformer decoded by eager PyTorch with a cache.

`qkv bench decode` runs this script (with Debian's /usr/bin/python3 and its python3-torch, the same
PyTorch release as libtorch-dev) in the same run, with the sizes, sources, output length, beam sizes
and thread count of its own measurement, and prints both speeds side by side.

The model is qkv's (Vaswani et al. 2017, §3), randomly initialised: one embedding matrix shared by
source, target and the pre-softmax projection, scaled by sqrt(d_model), plus sinusoidal positions;
post-norm encoder and decoder layers (LayerNorm eps 1e-6) with biased projections and a ReLU FFN.
Decoding is written the way a careful eager PyTorch decoder is: the encoder runs once; every decoder
layer keeps its self-attention keys and values in preallocated [B, H, T, D] buffers that each step
writes one position of, and its cross-attention keys and values are projected from the encoder output
once; each step feeds only the newest token and projects only its position to the vocabulary.

Searches, with the output length forced as qkv's bench forces it (</s> ruled out before --out-len
tokens, every row stops after --out-len tokens, so both sides run the same number of steps):
  greedy (beam 1)  the argmax of the log-probabilities at each step;
  beam K           per sentence the best K of the K·V extensions (log-probability sums) at each
                   step, the caches reordered to follow them. With the lengths forced no hypothesis
                   finishes early, so this is the whole of beam search's arithmetic.
The sources are random tokens 4..V-1 without padding (qkv's bench draws them the same way), so no
padding mask is needed. Each figure is the median of --repetitions timed runs after one warm-up.

Output: a human-readable line per search, or with --json one JSON object on stdout.

Dimensions: B = rows being decoded (sentences × beam), S = source length, t = step, C = d_model,
H = heads, D = C / H, V = vocabulary.
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, BOS, EOS = 0, 1, 2  # qkv's special token ids (base/special_tokens.h); 3 is <unk>


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d-ff", type=int, default=1024)
    p.add_argument("--layers", type=int, default=3, help="encoder and decoder layers (each)")
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--sentences", type=int, default=64)
    p.add_argument("--src-len", type=int, default=20)
    p.add_argument("--out-len", type=int, default=20)
    p.add_argument("--beams", type=str, default="1,4", help="comma-separated; 1 = greedy")
    p.add_argument("--repetitions", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = PyTorch's default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


def sinusoids(max_len, d_model):
    """PE(pos, 2i) = sin(pos / 10000^(2i/C)), PE(pos, 2i+1) = cos(...), interleaved: [max_len, C]."""
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # [L, 1]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    return pe


class Attention(nn.Module):
    """Multi-head attention with fused W_Q/W_K/W_V rows, as qkv lays them out."""

    def __init__(self, d_model, heads):
        super().__init__()
        self.heads, self.d = heads, d_model // heads
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def split(self, x):  # [B, T, C] -> [B, H, T, D]
        return x.view(x.size(0), x.size(1), self.heads, self.d).transpose(1, 2)

    def attend(self, q, k, v):  # q [B, H, Tq, D], k, v [B, H, Tk, D] -> [B, Tq, C]
        p = torch.softmax(q @ k.transpose(-2, -1) * (1.0 / math.sqrt(self.d)), -1)  # [B, H, Tq, Tk]
        o = p @ v  # [B, H, Tq, D]
        return self.out_proj(o.transpose(1, 2).reshape(q.size(0), q.size(2), -1))

    def self_full(self, x):  # encoder self-attention over the whole source, no mask
        q, k, v = self.in_proj(x).chunk(3, -1)
        return self.attend(self.split(q), self.split(k), self.split(v))

    def self_step(self, x, cache, t):  # x [B, 1, C]; cache (K, V) [B, H, T, D], position t written
        q, k, v = self.in_proj(x).chunk(3, -1)
        cache[0][:, :, t : t + 1] = self.split(k)
        cache[1][:, :, t : t + 1] = self.split(v)
        return self.attend(self.split(q), cache[0][:, :, : t + 1], cache[1][:, :, : t + 1])

    def memory_kv(self, memory):  # encoder output [B, S, C] -> K, V [B, H, S, D], once per search
        c = memory.size(-1)
        kv = F.linear(memory, self.in_proj.weight[c:], self.in_proj.bias[c:])
        k, v = kv.chunk(2, -1)
        return self.split(k).contiguous(), self.split(v).contiguous()

    def cross_step(self, x, kv):  # x [B, 1, C] attends to the cached memory keys and values
        c = x.size(-1)
        q = F.linear(x, self.in_proj.weight[:c], self.in_proj.bias[:c])
        return self.attend(self.split(q), kv[0], kv[1])


class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.w1, self.w2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.w2(F.relu(self.w1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.attn, self.ffn = Attention(a.d_model, a.heads), FeedForward(a.d_model, a.d_ff)
        self.norm1, self.norm2 = nn.LayerNorm(a.d_model, eps=1e-6), nn.LayerNorm(a.d_model, eps=1e-6)

    def forward(self, x):  # post-norm
        x = self.norm1(x + self.attn.self_full(x))
        return self.norm2(x + self.ffn(x))


class DecoderLayer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.self_attn, self.cross_attn = Attention(a.d_model, a.heads), Attention(a.d_model, a.heads)
        self.ffn = FeedForward(a.d_model, a.d_ff)
        self.norms = nn.ModuleList(nn.LayerNorm(a.d_model, eps=1e-6) for _ in range(3))

    def step(self, x, self_cache, cross_kv, t):  # x [B, 1, C], post-norm
        x = self.norms[0](x + self.self_attn.self_step(x, self_cache, t))
        x = self.norms[1](x + self.cross_attn.cross_step(x, cross_kv))
        return self.norms[2](x + self.ffn(x))


class Seq2Seq(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.scale = math.sqrt(a.d_model)
        self.embed = nn.Embedding(a.vocab, a.d_model)
        nn.init.xavier_uniform_(self.embed.weight)
        self.register_buffer("pe", sinusoids(max(a.src_len, a.out_len) + 2, a.d_model))
        self.encoder = nn.ModuleList(EncoderLayer(a) for _ in range(a.layers))
        self.decoder = nn.ModuleList(DecoderLayer(a) for _ in range(a.layers))

    def encode(self, src):  # [B, S] -> [B, S, C]
        x = self.embed(src) * self.scale + self.pe[: src.size(1)]
        for layer in self.encoder:
            x = layer(x)
        return x

    def step(self, tokens, state, t):  # tokens [B] at position t -> log-probabilities [B, V]
        x = self.embed(tokens).unsqueeze(1) * self.scale + self.pe[t]  # [B, 1, C]
        for layer, self_cache, cross_kv in zip(self.decoder, state["self"], state["cross"]):
            x = layer.step(x, self_cache, cross_kv, t)
        lp = torch.log_softmax(F.linear(x.squeeze(1), self.embed.weight), -1)  # [B, V]
        lp[:, PAD] = -math.inf
        lp[:, BOS] = -math.inf
        return lp

    def start(self, memory, out_len):  # the caches of rows decoding from memory [B, S, C]
        b, h = memory.size(0), self.decoder[0].self_attn.heads
        d = memory.size(2) // h
        empty = lambda: torch.empty(b, h, out_len + 1, d)
        return {"self": [(empty(), empty()) for _ in self.decoder],
                "cross": [layer.cross_attn.memory_kv(memory) for layer in self.decoder]}


def force_length(lp, t, out_len):
    """</s> ruled out before out_len tokens; at out_len only </s> remains (qkv's apply_length_rules)."""
    if t < out_len:
        lp[:, EOS] = -math.inf
    else:
        keep = lp[:, EOS].clone()
        lp.fill_(-math.inf)
        lp[:, EOS] = keep
    return lp


def greedy(model, src, out_len):
    state = model.start(model.encode(src), out_len)
    tokens = torch.full((src.size(0),), BOS, dtype=torch.long)
    outputs = []
    for t in range(out_len + 1):
        tokens = force_length(model.step(tokens, state, t), t, out_len).argmax(1)  # [B]
        outputs.append(tokens)
    return torch.stack(outputs[:-1], 1)  # [B, out_len], the forced </s> dropped


def beam_search(model, src, out_len, beam):
    n = src.size(0)
    rows = torch.arange(n).repeat_interleave(beam)  # [N·K] sentence-major
    state = model.start(model.encode(src)[rows], out_len)
    scores = torch.full((n, beam), -math.inf)
    scores[:, 0] = 0.0  # every sentence starts as one live beam
    tokens = torch.full((n * beam,), BOS, dtype=torch.long)
    history = torch.empty(n * beam, 0, dtype=torch.long)
    for t in range(out_len + 1):
        lp = force_length(model.step(tokens, state, t), t, out_len)  # [N·K, V]
        vocab = lp.size(1)
        top, index = (scores.view(-1, 1) + lp).view(n, beam * vocab).topk(beam, 1)  # [N, K]
        origin = (index // vocab + torch.arange(n).unsqueeze(1) * beam).view(-1)  # [N·K]
        tokens, scores = (index % vocab).view(-1), top
        if t == out_len:
            break
        history = torch.cat([history[origin], tokens.unsqueeze(1)], 1)
        for k, v in state["self"]:  # follow the chosen beams (the positions written so far)
            k[:, :, : t + 1] = k[origin, :, : t + 1]
            v[:, :, : t + 1] = v[origin, :, : t + 1]
    return history.view(n, beam, -1)[:, 0]  # [N, out_len], the best beam


def main(argv):
    a = parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = Seq2Seq(a).eval()
    src = torch.randint(4, a.vocab, (a.sentences, a.src_len))  # [B, S], no padding
    results = []
    with torch.inference_mode():
        for beam in [int(b) for b in a.beams.split(",")]:
            run = (lambda: greedy(model, src, a.out_len)) if beam == 1 else \
                (lambda: beam_search(model, src, a.out_len, beam))
            out = run()  # warm-up
            assert out.shape == (a.sentences, a.out_len), out.shape
            seconds = []
            for _ in range(a.repetitions):
                start = time.perf_counter()
                run()
                seconds.append(time.perf_counter() - start)
            median = sorted(seconds)[len(seconds) // 2]
            results.append({"beam": beam, "seconds": median,
                            "tokens_per_s": a.sentences * a.out_len / median})
    result = {"impl": "pytorch", "torch_version": torch.__version__, "threads": torch.get_num_threads(),
              "params": sum(p.numel() for p in model.parameters()), "results": results}
    if a.json:
        print(json.dumps(result))
    else:
        for r in results:
            print("pytorch {}: {} {:.0f} tokens/s ({:.3f} s, {} threads)".format(
                result["torch_version"], "greedy" if r["beam"] == 1 else "beam %d" % r["beam"],
                r["tokens_per_s"], r["seconds"], result["threads"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

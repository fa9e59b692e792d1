#!/usr/bin/python3
"""The PyTorch peer of `qkv bench train`: the same Transformer trained by torch.nn.Transformer.

`qkv bench train` runs this script (with Debian's /usr/bin/python3 and its python3-torch, the same
PyTorch release as libtorch-dev) in the same run, with the sizes, batch, optimizer, dropout, label
smoothing and thread settings of its own measurement, and prints both throughputs side by side.

The model mirrors qkv's (Vaswani et al. 2017, §3): one embedding matrix shared by source, target and
the pre-softmax projection, scaled by sqrt(d_model), plus sinusoidal positions and dropout;
torch.nn.Transformer in between (post-norm unless --norm pre). nn.Transformer uses one dropout rate
everywhere; the script then sets the attention-probability and FFN-inner (after ReLU) dropouts to
--attention-dropout and --relu-dropout, and drops the final LayerNorm of each stack in post-norm,
so that the network is qkv's. The one difference left: PyTorch's label smoothing spreads eps over
all V classes rather than the V - 1 non-target ones (the same cost).

Batches are synthetic: random tokens 4..V-1 in fixed [B, S] / [B, T] shapes, the same every step,
without padding, so both sides do exactly the same arithmetic. Timing starts after --warmup steps.

--precision bf16 or fp16 runs forward under torch.autocast (PyTorch's mixed precision: its op lists
decide which ops run low) with fp32 weights and optimizer; the loss is computed in fp32 from the
logits, as qkv does. fp16 adds torch.cuda.amp.GradScaler and needs --device cuda.

Output: a human-readable line, or with --json one JSON object on stdout.

Dimensions: B = batch, S = source length, T = target length, C = d_model, V = vocabulary.
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--d-ff", type=int, default=1024)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--encoder-layers", type=int, default=3)
    p.add_argument("--decoder-layers", type=int, default=3)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--dropout", type=float, default=0.1, help="residual and embedding dropout")
    p.add_argument("--attention-dropout", type=float, default=0.0, help="on attention probabilities")
    p.add_argument("--relu-dropout", type=float, default=0.0, help="inside the FFN, after the ReLU")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--norm", choices=["post", "pre"], default="post")
    p.add_argument("--batch", type=int, default=64, help="sentences per batch (B)")
    p.add_argument("--src-len", type=int, default=20, help="source length (S)")
    p.add_argument("--tgt-len", type=int, default=20, help="target length including </s> (T)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--adam-betas", type=float, nargs=2, default=[0.9, 0.98])
    p.add_argument("--adam-eps", type=float, default=1e-9)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = PyTorch's default")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="autocast dtype of the forward pass (fp16: CUDA only)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
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


class Seq2Seq(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.scale = math.sqrt(a.d_model)
        self.embed = nn.Embedding(a.vocab, a.d_model, padding_idx=0)
        nn.init.xavier_uniform_(self.embed.weight)
        self.register_buffer("pe", sinusoids(max(a.src_len, a.tgt_len) + 1, a.d_model))
        self.dropout = nn.Dropout(a.dropout)
        self.transformer = nn.Transformer(
            d_model=a.d_model, nhead=a.heads, num_encoder_layers=a.encoder_layers,
            num_decoder_layers=a.decoder_layers, dim_feedforward=a.d_ff, dropout=a.dropout,
            batch_first=True, norm_first=(a.norm == "pre"))
        layers = list(self.transformer.encoder.layers) + list(self.transformer.decoder.layers)
        for layer in layers:
            layer.self_attn.dropout = a.attention_dropout
            layer.dropout = nn.Dropout(a.relu_dropout)  # the FFN's inner dropout
        for layer in self.transformer.decoder.layers:
            layer.multihead_attn.dropout = a.attention_dropout
        if a.norm == "post":  # the paper's post-norm stacks end without a LayerNorm
            self.transformer.encoder.norm = None
            self.transformer.decoder.norm = None

    def embed_tokens(self, ids):  # [B, L] -> [B, L, C]
        return self.dropout(self.embed(ids) * self.scale + self.pe[: ids.size(1)])

    def forward(self, src, tgt_in, causal):  # -> logits [B, T, V]
        y = self.transformer(self.embed_tokens(src), self.embed_tokens(tgt_in), tgt_mask=causal,
                             src_key_padding_mask=src.eq(0), tgt_key_padding_mask=tgt_in.eq(0),
                             memory_key_padding_mask=src.eq(0))  # [B, T, C]
        return F.linear(y, self.embed.weight)  # tied pre-softmax projection


def main(argv):
    a = parse_args(argv)
    if a.precision == "fp16" and a.device != "cuda":
        sys.exit("peer_train.py: --precision fp16 needs --device cuda")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    model = Seq2Seq(a).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=a.lr, betas=tuple(a.adam_betas), eps=a.adam_eps)
    low = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.precision]
    scaler = torch.cuda.amp.GradScaler(enabled=a.precision == "fp16")

    g = torch.Generator().manual_seed(a.seed)
    src = torch.randint(4, a.vocab, (a.batch, a.src_len), generator=g)  # [B, S]
    tgt = torch.randint(4, a.vocab, (a.batch, a.tgt_len), generator=g)  # [B, T]
    tgt_in = torch.cat([torch.ones(a.batch, 1, dtype=torch.long), tgt[:, :-1]], 1)  # <s> = 1, shifted
    causal = nn.Transformer.generate_square_subsequent_mask(a.tgt_len)  # [T, T]
    src, tgt, tgt_in, causal = src.to(device), tgt.to(device), tgt_in.to(device), causal.to(device)
    tokens_per_step = tgt.numel()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=a.device, dtype=low or torch.bfloat16, enabled=low is not None):
            logits = model(src, tgt_in, causal)
        loss = F.cross_entropy(logits.float().reshape(-1, a.vocab), tgt.reshape(-1), ignore_index=0,
                               label_smoothing=a.label_smoothing, reduction="sum")
        scaler.scale(loss / tokens_per_step).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.item() / tokens_per_step

    for _ in range(a.warmup):
        step()
    start = time.perf_counter()
    last_loss = float("nan")
    for _ in range(a.steps):
        last_loss = step()
    seconds = time.perf_counter() - start

    result = {
        "impl": "pytorch",
        "precision": a.precision,
        "device": a.device,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()),
        "steps": a.steps,
        "seconds": seconds,
        "tgt_tokens_per_step": tokens_per_step,
        "tokens_per_s": tokens_per_step * a.steps / seconds,
        "ms_per_step": 1000.0 * seconds / a.steps,
        "last_loss": last_loss,
    }
    if a.json:
        print(json.dumps(result))
    else:
        print("pytorch {torch_version}: {tokens_per_s:.0f} target tokens/s ({ms_per_step:.1f} ms/step, "
              "{threads} threads, {params} parameters)".format(**result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/python3
"""Attention heatmaps for one sentence, as in Figures 3-5 of Vaswani et al. 2017.

`qkv attention` translates a sentence, records the attention probabilities of one layer, writes them
as JSON and runs this script. One row of panels per attention kind, one column per head:
  encoder self-attention   queries and keys: the source tokens (and </s>);
  decoder self-attention   queries: the token each position predicts; keys: the decoder inputs
                           (<s> and the translation so far), masked above the diagonal;
  cross-attention          queries: the token each position predicts; keys: the source tokens.
Each panel's colours run from 0 to its own largest probability, so that weak heads stay visible.

Usage: /usr/bin/python3 tools/plot_attention.py MAPS.json OUT.png|OUT.svg
Needs matplotlib (Debian: python3-matplotlib); draws with the Agg backend, no display needed.
"""
import argparse
import json
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("plot_attention.py: matplotlib is missing (on Debian: apt install python3-matplotlib)")

KINDS = [
    ("encoder_self", "encoder self-attention", "src_tokens", "src_tokens"),
    ("decoder_self", "decoder self-attention", "tgt_out_tokens", "tgt_in_tokens"),
    ("decoder_cross", "cross-attention", "tgt_out_tokens", "src_tokens"),
]


def check_shapes(maps):
    for key, _, rows, cols in KINDS:
        for h, grid in enumerate(maps[key]):
            if len(grid) != len(maps[rows]) or any(len(r) != len(maps[cols]) for r in grid):
                sys.exit(f"plot_attention.py: {key} head {maps['heads'][h]} is not "
                         f"{len(maps[rows])} x {len(maps[cols])} ({rows} x {cols})")


def draw(ax, grid, row_labels, col_labels, title, fontsize):
    peak = max(max(r) for r in grid) or 1.0
    ax.imshow(grid, cmap="Blues", vmin=0.0, vmax=peak, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(col_labels)))
    ax.set_xticklabels(col_labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels(row_labels, fontsize=fontsize)
    ax.set_title(title, fontsize=fontsize + 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("maps_json")
    parser.add_argument("out")
    args = parser.parse_args()
    with open(args.maps_json) as f:
        maps = json.load(f)
    check_shapes(maps)

    heads = maps["heads"]
    longest = max(len(maps["src_tokens"]), len(maps["tgt_in_tokens"]))
    panel = max(2.6, 0.19 * longest)  # inches per panel: room for one label per token
    fontsize = 7 if longest > 20 else 8
    fig, axes = plt.subplots(len(KINDS), len(heads), figsize=(panel * len(heads), panel * len(KINDS) + 0.6),
                             squeeze=False)
    for row, (key, name, rows, cols) in enumerate(KINDS):
        for col, head in enumerate(heads):
            title = f"{name}, head {head}" if len(heads) < 4 else (f"{name}\nhead {head}" if col == 0 else f"head {head}")
            draw(axes[row][col], maps[key][col], maps[rows], maps[cols], title, fontsize)
    fig.suptitle(f"layer {maps['layer']} of {maps['layers']}: \"{maps['sentence']}\" -> \"{maps['translation']}\"",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=72)
    print(f"[plot] wrote {args.out}")


if __name__ == "__main__":
    main()

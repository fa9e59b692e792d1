#!/usr/bin/python3
"""Learning curves of the scaled Table 3 (`qkv reproduce table3` writes DIR/curves.csv and runs this).

Dev perplexity (per token, unsmoothed) against the training step, one panel per group of rows of
Vaswani et al. 2017, Table 3: (A) heads, (B) key size, (C) model size, (D) regularisation,
(E) positions and big; the base row is drawn in black in every panel for reference.

Usage: /usr/bin/python3 tools/plot_curves.py DIR/curves.csv OUT.png [--title TEXT]
Input: a CSV with the header "row,step,dev_ppl". Output: PNG or SVG, by OUT's extension.
Needs matplotlib (Debian: python3-matplotlib); draws with the Agg backend, no display needed.
"""
import argparse
import csv
import sys
from collections import OrderedDict

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("plot_curves.py: matplotlib is missing (on Debian: apt install python3-matplotlib)")

GROUPS = OrderedDict(
    [
        ("(A) heads h, d_k = d_v = d_model / h", ["A1", "A2", "A3", "A4"]),
        ("(B) smaller keys d_k", ["B1", "B2"]),
        ("(C) layers N", ["C1", "C2", "C3"]),
        ("(C) widths d_model, d_ff", ["C4", "C5", "C6", "C7"]),
        ("(D) dropout, label smoothing", ["D1", "D2", "D3", "D4"]),
        ("(E) learned positions; big", ["E", "big"]),
    ]
)


def read_curves(path):
    """row -> ([steps], [ppl]) in file order."""
    curves = OrderedDict()
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"row", "step", "dev_ppl"} - set(reader.fieldnames or [])
        if missing:
            sys.exit(f"plot_curves.py: {path}: missing column(s) {sorted(missing)}")
        for line in reader:
            steps, ppl = curves.setdefault(line["row"], ([], []))
            steps.append(int(line["step"]))
            ppl.append(float(line["dev_ppl"]))
    return curves


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("curves_csv")
    parser.add_argument("out")
    parser.add_argument("--title", default="Table 3 at toy scale: dev perplexity during training")
    args = parser.parse_args()

    curves = read_curves(args.curves_csv)
    if not curves:
        sys.exit(f"plot_curves.py: {args.curves_csv} holds no points")
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), sharey=True)
    for ax, (title, rows) in zip(axes.flat, GROUPS.items()):
        if "base" in curves:
            ax.plot(*curves["base"], color="black", linewidth=2, label="base")
        for row in rows:
            if row in curves:
                ax.plot(*curves[row], marker=".", label=row)
        ax.set_title(title, fontsize=10)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("dev perplexity")
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"[plot] wrote {args.out}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Turns a run's metrics (RUN/metrics.jsonl, written by `curaclip train` on rank 0)
into PNG curves: training loss and throughput against steps, and zero-shot
accuracy / retrieval at each evaluation. Several runs go on the same axes.

    python3 bench/plot_metrics.py runs/tiny-20261123 [more runs] [--out curves.png]
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import read_metrics  # noqa: E402


def read_run(run):
    """metrics.jsonl plus the final `curaclip eval` (RUN/eval.json) as one more evaluation."""
    train, evals = read_metrics(run)
    final = os.path.join(run, "eval.json")
    if os.path.exists(final) and train:
        with open(final) as f:
            e = json.load(f)
        e["step"] = train[-1]["step"]
        evals.append(e)
    return train, evals


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default=None, help="PNG path (default: RUN/curves.png of the first run)")
    a = ap.parse_args()
    fig, (ax_loss, ax_rate, ax_acc) = plt.subplots(1, 3, figsize=(15, 4))
    for run in a.runs:
        train, evals = read_run(run)
        label = os.path.basename(os.path.normpath(run))
        ax_loss.plot([m["step"] for m in train], [m["loss"] for m in train], label=label)
        ax_rate.plot([m["step"] for m in train], [m["examples_per_s"] for m in train], label=label)
        if evals:
            steps = [e["step"] for e in evals]
            ax_acc.plot(steps, [100 * e["zeroshot_top1"] for e in evals], "o-", label=f"{label} zero-shot top-1")
            ax_acc.plot(steps, [100 * e["i2t_r10"] for e in evals], "s--", label=f"{label} image→text R@10")
    ax_loss.set(xlabel="step", ylabel="contrastive loss", title="training loss")
    ax_rate.set(xlabel="step", ylabel="pairs / s", title="throughput")
    ax_acc.set(xlabel="step", ylabel="%", title="evaluation")
    for ax in (ax_loss, ax_rate, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    out = a.out or os.path.join(a.runs[0], "curves.png")
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()

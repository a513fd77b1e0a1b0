#!/usr/bin/python3
"""JEST on Fashion-MNIST with misaligned captions (DESIGN §6), through the CLI.

1. `curaclip prep fashion-mnist --noise 0.4 --curated N`: 40% of the training
   captions belong to another image; a clean curated subset for the reference.
2. A reference model trained on the curated subset; `curaclip embed --what both`
   caches its embeddings of the noisy training set.
3. Learner arms with the same learner-step budget and batch b: uniform (no
   selection), independent learnability top-k (f = 0.8), JEST learnability at
   f = 0.5, 0.8, 0.9, and Flexi-JEST at f = 0.8 (scoring at patch 14, half of every
   batch trained at patch 14). Zero-shot accuracy on the test set every E steps.

Writes bench/results/jest_fashion_mnist.json and docs/jest_fashion_mnist.png.
    /usr/bin/python3 bench/jest_fashion_mnist.py --build build [--steps 1500]
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_common import git_commit, machine  # noqa: E402


def sh(cmd, log):
    print("+", " ".join(cmd), flush=True)
    t0 = time.time()
    with open(log, "a") as f:
        f.write("+ " + " ".join(cmd) + "\n")
        f.flush()
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    return time.time() - t0


def read_metrics(run):
    train, evals = [], []
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            (evals if m.get("eval") else train).append(m)
    return train, evals


def steps_to_reach(evals, target):
    """First (linearly interpolated) learner step where zero-shot top-1 reaches target."""
    prev = (0, 0.0)
    for e in evals:
        if e["zeroshot_top1"] >= target:
            s0, a0 = prev
            if e["zeroshot_top1"] == a0:
                return e["step"]
            return s0 + (target - a0) / (e["zeroshot_top1"] - a0) * (e["step"] - s0)
        prev = (e["step"], e["zeroshot_top1"])
    return None


def flops_to_reach(evals, target):
    prev = (0.0, 0.0)
    for e in evals:
        if e["zeroshot_top1"] >= target:
            f0, a0 = prev
            if e["zeroshot_top1"] == a0:
                return e["flops"]
            return f0 + (target - a0) / (e["zeroshot_top1"] - a0) * (e["flops"] - f0)
        prev = (e["flops"], e["zeroshot_top1"])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--work", default="/tmp/curaclip_jest_bench")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--ref-steps", type=int, default=800)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--arms", default="uniform,independent_f0.8,jest_f0.5,jest_f0.8,jest_f0.9,flexi_jest_f0.8")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "jest_fashion_mnist.json"))
    ap.add_argument("--plot", default=os.path.join(ROOT, "docs", "jest_fashion_mnist.png"))
    a = ap.parse_args()
    binary = os.path.join(a.build, "curaclip")
    mpirun = ["bash", os.path.join(ROOT, "jobs", "local", "mpirun.sh"), str(a.ranks), binary]
    os.makedirs(a.work, exist_ok=True)
    log = os.path.join(a.work, "log.txt")
    data = os.path.join(a.work, "data")
    t_start = time.time()
    if not os.path.exists(os.path.join(data, "train.h5")):
        sh([binary, "prep", "fashion-mnist", "--out", data, "--noise", "0.4", "--curated", "10000"], log)
    ref = os.path.join(a.work, "reference")
    if not os.path.exists(os.path.join(ref, "latest")):
        shutil.rmtree(ref, ignore_errors=True)
        sh(mpirun + ["train", "--config", "configs/tiny.ini", "--data.train", f"{data}/curated.h5", "--data.eval",
                     f"{data}/test.h5", "--train.out", ref, "--train.steps", str(a.ref_steps), "--train.eval_every", "0"],
           log)
    ref_ckpt = os.path.join(ref, open(os.path.join(ref, "latest")).read().strip())
    cache = os.path.join(a.work, "ref_emb.h5")
    if not os.path.exists(cache):
        sh(mpirun + ["embed", "--checkpoint", ref_ckpt, "--data", f"{data}/train.h5", "--out", cache, "--what", "both"],
           log)
    ref_eval = read_metrics(ref)[1]

    jest = ["--jest.enable", "true", "--jest.reference", ref_ckpt, "--jest.reference_cache", cache]
    arms = {
        "uniform": [],
        "independent_f0.8": jest + ["--jest.filter_ratio", "0.8", "--jest.method", "independent_topk"],
        "jest_f0.5": jest + ["--jest.filter_ratio", "0.5"],
        "jest_f0.8": jest + ["--jest.filter_ratio", "0.8"],
        "jest_f0.9": jest + ["--jest.filter_ratio", "0.9"],
        "flexi_jest_f0.8": jest + ["--jest.filter_ratio", "0.8", "--jest.score_resolution", "low",
                                   "--model.flexi_patch", "14"],
    }
    results = {"name": "jest_fashion_mnist", "date": datetime.date.today().isoformat(),
               "command": "/usr/bin/python3 bench/jest_fashion_mnist.py " + " ".join(sys.argv[1:]),
               "machine": machine(), "git_commit": git_commit(), "noise": 0.4, "learner_steps": a.steps,
               "batch": 256, "ranks": a.ranks, "reference_steps": a.ref_steps, "reference_curated_examples": 10000,
               "reference_zeroshot": ref_eval[-1]["zeroshot_top1"] if ref_eval else None, "curves": {}}
    for name in a.arms.split(","):
        run = os.path.join(a.work, "runs", name)
        if not os.path.exists(os.path.join(run, f"step_{a.steps:08d}.h5")):
            shutil.rmtree(run, ignore_errors=True)
            wall = sh(mpirun + ["train", "--config", "configs/tiny.ini", "--data.train", f"{data}/train.h5",
                                "--data.eval", f"{data}/test.h5", "--train.out", run, "--train.steps", str(a.steps),
                                "--train.warmup", "100", "--train.eval_every", str(a.eval_every),
                                "--train.log_every", "50"] + arms[name], log)
            results[f"wall_s_{name}"] = round(wall, 1)
        train, evals = read_metrics(run)
        results["curves"][name] = {"step": [e["step"] for e in evals], "zeroshot_top1": [e["zeroshot_top1"] for e in evals],
                                   "flops": [e["flops"] for e in evals]}
        results[f"final_zeroshot_{name}"] = evals[-1]["zeroshot_top1"]
        results[f"final_i2t_r10_{name}"] = evals[-1]["i2t_r10"]
        results[f"corrupted_share_{name}"] = sum(m["corrupted_share"] for m in train) / len(train)
        results[f"total_flops_{name}"] = evals[-1]["flops"]
        print(f"{name}: final zero-shot {evals[-1]['zeroshot_top1']:.4f}, corrupted share "
              f"{results[f'corrupted_share_{name}']:.3f}", flush=True)

    target = results["final_zeroshot_uniform"]
    uni_steps = steps_to_reach(results_evals(a, "uniform"), target)
    uni_flops = flops_to_reach(results_evals(a, "uniform"), target)
    rows = []
    for name in a.arms.split(","):
        ev = results_evals(a, name)
        s = steps_to_reach(ev, target)
        fl = flops_to_reach(ev, target)
        results[f"steps_to_uniform_final_{name}"] = s
        tag = name.replace("jest_", "").replace("flexi_", "flexi_") if name != "uniform" else "uniform"
        if s:
            results[f"steps_speedup_vs_uniform_{tag}"] = round(uni_steps / s, 3)
        if fl:
            results[f"flops_speedup_vs_uniform_{tag}"] = round(uni_flops / fl, 3)
        rows.append((name, results[f"final_zeroshot_{name}"], s, uni_steps / s if s else None,
                     uni_flops / fl if fl else None, results[f"corrupted_share_{name}"]))
    results["total_wall_s"] = round(time.time() - t_start, 1)

    print(f"\n{'arm':18} {'final zero-shot':>15} {'steps to uniform final':>22} {'step speedup':>12} "
          f"{'FLOP speedup':>12} {'corrupted':>9}")
    for name, acc, s, sp, fsp, cor in rows:
        print(f"{name:18} {100 * acc:14.2f}% {('%.0f' % s) if s else 'never':>22} "
              f"{('%.2fx' % sp) if sp else '-':>12} {('%.2fx' % fsp) if fsp else '-':>12} {100 * cor:8.1f}%")
    print(f"machine: {results['machine']}; base rate of corrupted pairs 40%")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
    print("wrote", a.out)
    plot(results, a.plot)


def results_evals(a, name):
    return read_metrics(os.path.join(a.work, "runs", name))[1]


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, c in results["curves"].items():
        ax1.plot(c["step"], [100 * v for v in c["zeroshot_top1"]], "o-", ms=3, label=name)
        ax2.plot([f / 1e12 for f in c["flops"]], [100 * v for v in c["zeroshot_top1"]], "o-", ms=3, label=name)
    for ax in (ax1, ax2):
        ax.axhline(100 * results["final_zeroshot_uniform"], color="gray", ls=":", lw=1)
        ax.set_ylabel("zero-shot top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_xlabel("learner steps")
    ax2.set_xlabel("total model TFLOPs (scoring included)")
    fig.suptitle("JEST on Fashion-MNIST with 40% misaligned captions (tiny recipe)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    print("wrote", path)


if __name__ == "__main__":
    main()

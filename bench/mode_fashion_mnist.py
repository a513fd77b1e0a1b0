#!/usr/bin/python3
"""MoDE on Fashion-MNIST with the tiny recipe (DESIGN §7, §12), driving the CLI.

Pipeline: a seed model (--seed-steps), `curaclip embed` of the training captions
by the seed, `curaclip cluster` (fine m, coarse n = 2 and 4), `curaclip
train-experts` (--expert-steps each, from the seed), `curaclip eval --experts`
(routed ensemble and uniform average). Baselines: the seed trained on for
n * expert-steps more steps (equal compute, for n = 2 and 4 separately), the
uniform average of the experts, and Rand-n: experts trained on a random split
that deals the same fine clusters to the experts at random (bench/mode_random_split).

Every stage runs under `mpirun -n RANKS` with OMP_NUM_THREADS = cores / ranks.
A stage whose output exists is skipped, so a work folder can be resumed.
Writes bench/results/mode_fashion_mnist.json and docs/mode_fashion_mnist.png.

    /usr/bin/python3 bench/mode_fashion_mnist.py --build build --work /tmp/mode_fmnist
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_common import git_commit, machine  # noqa: E402


class Runner:
    def __init__(self, args):
        self.args = args
        self.stage_s = {}
        cores = os.cpu_count() or 1
        self.threads = max(1, cores // args.ranks)

    def mpirun(self, *cmd):
        extra = ["--allow-run-as-root"] if os.geteuid() == 0 else []
        if self.args.ranks > (os.cpu_count() or 1):
            extra.append("--oversubscribe")
        return ["mpirun", "-n", str(self.args.ranks), *extra, "--bind-to", "none",
                "-x", f"OMP_NUM_THREADS={self.threads}", *cmd]

    def run(self, name, cmd, done_if=None, log=None):
        if done_if and os.path.exists(done_if):
            print(f"[{name}] done already ({done_if})", flush=True)
            return
        print(f"[{name}] {' '.join(cmd)}", flush=True)
        t0 = time.time()
        logf = open(log, "w") if log else None
        r = subprocess.run(cmd, stdout=logf or None, stderr=subprocess.STDOUT if logf else None, text=True)
        if logf:
            logf.close()
        if r.returncode != 0:
            if log:
                sys.stderr.write(open(log).read()[-4000:])
            sys.exit(f"stage {name} failed (exit {r.returncode})")
        self.stage_s[name] = round(time.time() - t0, 1)
        print(f"[{name}] {self.stage_s[name]} s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default="/tmp/mode_fmnist")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--seed-steps", type=int, default=1500)
    ap.add_argument("--expert-steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50, help="warmup of the expert and continuation runs")
    ap.add_argument("--fine", type=int, default=128)
    ap.add_argument("--experts", default="2,4")
    ap.add_argument("--ood-share", type=float, default=0.02)
    ap.add_argument("--out-json", default=os.path.join(ROOT, "bench", "results", "mode_fashion_mnist.json"))
    ap.add_argument("--out-png", default=os.path.join(ROOT, "docs", "mode_fashion_mnist.png"))
    args = ap.parse_args()
    bin_ = os.path.join(ROOT, args.build, "curaclip") if not os.path.isabs(args.build) else os.path.join(args.build, "curaclip")
    split_bin = os.path.join(os.path.dirname(bin_), "mode_random_split")
    W = args.work
    data = os.path.join(W, "data")
    os.makedirs(W, exist_ok=True)
    R = Runner(args)
    t_all = time.time()
    cfg = os.path.join(ROOT, "configs", "tiny.ini")
    common = ["--config", cfg, "--data.train", f"{data}/train.h5", "--data.eval", "", "--train.log_every", "100"]

    R.run("prep", [bin_, "prep", "fashion-mnist", "--out", data], done_if=f"{data}/test.h5", log=f"{W}/prep.log")
    R.run("seed", R.mpirun(bin_, "train", *common, "--train.steps", str(args.seed_steps), "--train.out", f"{W}/seed"),
          done_if=f"{W}/seed/latest", log=f"{W}/seed.log")
    R.run("embed", R.mpirun(bin_, "embed", "--checkpoint", f"{W}/seed", "--data", f"{data}/train.h5",
                            "--out", f"{W}/caption_emb.h5"), done_if=f"{W}/caption_emb.h5", log=f"{W}/embed.log")
    with open(f"{W}/seed/latest") as f:  # the seed may have been stopped early (SIGTERM checkpoints)
        seed_step = int(f.read().strip().split("_")[1].split(".")[0])
    ns = [int(x) for x in args.experts.split(",")]
    E = args.expert_steps
    expert_opts = ["--train.init_from", f"{W}/seed", "--train.steps", str(E), "--train.warmup", str(args.warmup),
                   "--mode.ood_share", str(args.ood_share)]
    for n in ns:
        R.run(f"cluster{n}", R.mpirun(bin_, "cluster", "--embeddings", f"{W}/caption_emb.h5", "--out", f"{W}/assign{n}.h5",
                                      "--fine", str(args.fine), "--experts", str(n), "--verbose", "0"),
              done_if=f"{W}/assign{n}.h5", log=f"{W}/cluster{n}.log")
        R.run(f"randsplit{n}", [split_bin, f"{W}/assign{n}.h5", f"{W}/rand{n}.h5", str(n)], done_if=f"{W}/rand{n}.h5",
              log=f"{W}/randsplit{n}.log")
        for arm, assign in ((f"mode{n}", f"{W}/assign{n}.h5"), (f"rand{n}", f"{W}/rand{n}.h5")):
            R.run(f"train_{arm}", R.mpirun(bin_, "train-experts", *common, *expert_opts, "--mode.assign", assign,
                                           "--train.out", f"{W}/{arm}"),
                  done_if=f"{W}/{arm}/expert_{n - 1}/latest", log=f"{W}/train_{arm}.log")
        R.run(f"train_eq{n}", R.mpirun(bin_, "train", *common, "--train.init_from", f"{W}/seed", "--train.steps", str(n * E),
                                       "--train.warmup", str(args.warmup), "--train.out", f"{W}/eq{n}"),
              done_if=f"{W}/eq{n}/latest", log=f"{W}/train_eq{n}.log")

    # Evaluation.
    test = f"{data}/test.h5"
    res = {}
    def ev(arm, *extra):
        out = f"{W}/eval_{arm}.json"
        R.run(f"eval_{arm}", R.mpirun(bin_, "eval", "--data", test, "--json", out, *extra), done_if=out,
              log=f"{W}/eval_{arm}.log")
        with open(out) as f:
            res[arm] = json.load(f)
    ev("seed", "--checkpoint", f"{W}/seed")
    for n in ns:
        ev(f"eq{n}", "--checkpoint", f"{W}/eq{n}")
        ev(f"mode{n}", "--experts", f"{W}/mode{n}", "--assign", f"{W}/assign{n}.h5")
        ev(f"mode{n}_metaclip", "--experts", f"{W}/mode{n}", "--assign", f"{W}/assign{n}.h5", "--routing", "metaclip")
        ev(f"mode{n}_logits", "--experts", f"{W}/mode{n}", "--assign", f"{W}/assign{n}.h5", "--ensemble-space", "logits")
        ev(f"rand{n}", "--experts", f"{W}/rand{n}", "--assign", f"{W}/rand{n}.h5")

    # Arms: single models, routed ensembles, uniform averages.
    def pts(x):
        return round(100.0 * x, 2)
    arms = {}
    def single(name, r):
        arms[name] = {k: pts(r[k]) for k in ("zeroshot_top1", "i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5")}
    single("seed", res["seed"])
    for n in ns:
        single(f"equal_compute_{n}", res[f"eq{n}"])
        single(f"mode{n}", res[f"mode{n}"]["routed"])
        single(f"mode{n}_metaclip_routing", res[f"mode{n}_metaclip"]["routed"])
        single(f"mode{n}_logit_space", res[f"mode{n}_logits"]["routed"])
        single(f"mode{n}_uniform", res[f"mode{n}"]["uniform"])
        single(f"rand{n}", res[f"rand{n}"]["routed"])
        single(f"rand{n}_uniform", res[f"rand{n}"]["uniform"])
        for c, e in enumerate(res[f"mode{n}"]["experts"]):
            single(f"mode{n}_expert{c}_alone", e)

    total = round(time.time() - t_all, 1)
    command = "/usr/bin/python3 bench/mode_fashion_mnist.py " + " ".join(sys.argv[1:])
    out = {
        "name": "mode_fashion_mnist",
        "date": datetime.date.today().isoformat(),
        "command": command,
        "machine": machine(),
        "git_commit": git_commit(),
        "ranks": args.ranks,
        "threads_per_rank": R.threads,
        "seed_steps": args.seed_steps,
        "seed_checkpoint_step": seed_step,
        "expert_steps": E,
        "batch_size": 256,
        "fine_clusters": args.fine,
        "ood_share": args.ood_share,
        "routing": "paper schedule, lambda 0.2, temperature 1, cosine-similarity ensemble (unless the arm says otherwise)",
        "rand_split": "the same fine clusters dealt to the experts at random (balanced counts)",
        "units": "accuracy and recall in percent; gains in points",
    }
    for name, a in arms.items():
        out[f"zeroshot_{name}"] = a["zeroshot_top1"]
    for n in ns:
        out[f"zeroshot_gain_vs_equal_compute_mode{n}"] = round(arms[f"mode{n}"]["zeroshot_top1"] - arms[f"equal_compute_{n}"]["zeroshot_top1"], 2)
        out[f"zeroshot_gain_vs_rand_mode{n}"] = round(arms[f"mode{n}"]["zeroshot_top1"] - arms[f"rand{n}"]["zeroshot_top1"], 2)
        out[f"routing_weights_zeroshot_mode{n}"] = [round(w, 4) for w in res[f"mode{n}"]["weights_zeroshot"]]
        out[f"routing_weights_zeroshot_mode{n}_metaclip"] = [round(w, 4) for w in res[f"mode{n}_metaclip"]["weights_zeroshot"]]
    out["arms"] = arms
    out["stage_seconds"] = R.stage_s
    out["total_seconds"] = total
    os.makedirs(os.path.dirname(args.out_json), exist_ok=True)
    with open(args.out_json, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")

    # Table.
    print(f"\n{'arm':32s} {'zero-shot':>9s} {'i2t R@1':>8s} {'i2t R@5':>8s} {'t2i R@1':>8s} {'t2i R@5':>8s}")
    for name, a in arms.items():
        print(f"{name:32s} {a['zeroshot_top1']:9.2f} {a['i2t_r1']:8.2f} {a['i2t_r5']:8.2f} {a['t2i_r1']:8.2f} {a['t2i_r5']:8.2f}")
    for n in ns:
        print(f"MoDE-{n} gain vs equal compute: {out[f'zeroshot_gain_vs_equal_compute_mode{n}']:+.2f} points; "
              f"vs Rand-{n}: {out[f'zeroshot_gain_vs_rand_mode{n}']:+.2f}")
    print(f"total {total} s; wrote {args.out_json}")

    # Plot.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    order = ["seed"]
    for n in ns:
        order += [f"equal_compute_{n}", f"mode{n}", f"mode{n}_metaclip_routing", f"mode{n}_uniform", f"rand{n}"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    colors = {"seed": "gray", "equal": "tab:blue", "mode": "tab:green", "metaclip": "tab:olive",
              "uniform": "tab:orange", "rand": "tab:red"}
    def color(nm):
        for k in ("metaclip", "uniform", "equal", "rand", "mode", "seed"):
            if k in nm:
                return colors[k]
        return "black"
    ys = [arms[a]["zeroshot_top1"] for a in order]
    axes[0].bar(range(len(order)), ys, color=[color(a) for a in order])
    axes[0].set_xticks(range(len(order)))
    axes[0].set_xticklabels(order, rotation=60, ha="right", fontsize=8)
    axes[0].set_ylabel("zero-shot top-1 (%)")
    axes[0].set_ylim(max(0, min(ys) - 10), min(100, max(ys) + 5))
    for i, y in enumerate(ys):
        axes[0].text(i, y + 0.3, f"{y:.1f}", ha="center", fontsize=7)
    axes[0].set_title(f"Fashion-MNIST zero-shot (seed {seed_step} steps, experts {E} steps each)")
    w = 0.38
    t2i = [arms[a]["t2i_r1"] for a in order]
    i2t = [arms[a]["i2t_r1"] for a in order]
    axes[1].bar([i - w / 2 for i in range(len(order))], i2t, w, label="image->text R@1")
    axes[1].bar([i + w / 2 for i in range(len(order))], t2i, w, label="text->image R@1")
    axes[1].set_xticks(range(len(order)))
    axes[1].set_xticklabels(order, rotation=60, ha="right", fontsize=8)
    axes[1].set_ylabel("recall@1 (%)")
    axes[1].legend(fontsize=8)
    axes[1].set_title("retrieval on the 10k test pairs")
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out_png), exist_ok=True)
    fig.savefig(args.out_png, dpi=110)
    print(f"wrote {args.out_png}")


if __name__ == "__main__":
    main()

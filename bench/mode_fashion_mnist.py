#!/usr/bin/python3
"""MoDE on Fashion-MNIST with the tiny recipe (DESIGN §7, §12), driving the CLI.

Protocol (as the released MoDE code: experts finish the seed's schedule):
  * the training split is cut into fit (the first N - holdout rows, all training)
    and val (the last --holdout rows, only for choosing the routing temperature);
  * the seed is a run whose cosine schedule spans seed-steps + expert-steps, stopped
    (checkpointed) after --seed-steps: a partially trained model, mid-schedule;
  * every continuation from the seed (each expert, and the equal-compute model)
    starts from the seed's parameters with a fresh AdamW, --warmup steps up to the
    seed's learning rate at the stop, then a cosine to 0 over its own length:
    e steps for an expert, n * e for the equal-compute model (same treatment);
  * `curaclip embed` of the fit captions by the seed, `curaclip cluster` (fine m,
    coarse n), `curaclip train-experts`, `curaclip eval --experts`;
  * routing: the paper schedule; its temperature tau is chosen per ensemble on val
    from --taus (zero-shot top-1), then used once on the test set. Rand-n experts
    get the same selection. The released code's schedule and the uniform average
    are reported beside it.
Baselines: the seed continued for n * expert-steps (equal compute), the uniform
average of the experts, Rand-n: the same fine clusters dealt to the experts at
random (bench/mode_random_split).

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
        nice = ["nice", "-n", str(self.args.nice)] if self.args.nice else []
        extra = ["--allow-run-as-root"] if os.geteuid() == 0 else []
        if self.args.ranks > (os.cpu_count() or 1):
            extra.append("--oversubscribe")
        return [*nice, "mpirun", "-n", str(self.args.ranks), *extra, "--bind-to", "none",
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


def split_holdout(src, fit, val, holdout):
    """fit = the first N - holdout rows of src, val = the last holdout rows (every
    per-example dataset sliced, the rest and the attributes copied)."""
    import h5py
    with h5py.File(src, "r") as f:
        n = f["labels"].shape[0]
        assert 0 < holdout < n, f"--holdout {holdout} must be in (0, {n})"
        for out, lo, hi in ((fit, 0, n - holdout), (val, n - holdout, n)):
            with h5py.File(out + ".tmp", "w") as g:
                for k, v in f.attrs.items():  # same HDF5 types (fixed-length strings stay fixed-length)
                    g.attrs.create(k, v, dtype=f.attrs.get_id(k).dtype)
                g.attrs.create("source_rows", f"rows [{lo}, {hi}) of {src}".encode())
                for name, d in f.items():
                    data = d[lo:hi] if d.shape and d.shape[0] == n else d[()]
                    g.create_dataset(name, data=data, dtype=d.dtype)
                    for k, v in d.attrs.items():
                        g[name].attrs.create(k, v, dtype=d.attrs.get_id(k).dtype)
            os.replace(out + ".tmp", out)


def seed_lr(cfg_path, s, total):
    """The seed's learning rate after s of total steps (src/optim/lr_schedule.h, min_lr 0)."""
    import configparser
    import math
    c = configparser.ConfigParser()
    c.read(cfg_path)
    lr, w = float(c["train"]["lr"]), int(c["train"]["warmup"])
    if s < w:
        return lr * (s + 1) / w
    return 0.5 * lr * (1 + math.cos(math.pi * min(1.0, (s - w) / (total - w))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default="/tmp/mode_fmnist")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--seed-steps", type=int, default=1500)
    ap.add_argument("--expert-steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50, help="warmup of the expert and continuation runs")
    ap.add_argument("--fine", type=int, default=128)
    ap.add_argument("--experts", default="4,2", help="n of the MoDE-n arms, in the order they are trained")
    ap.add_argument("--rand", default="2", help="n of the Rand-n arms")
    ap.add_argument("--holdout", type=int, default=5000, help="training rows held out to choose the routing temperature")
    ap.add_argument("--taus", default="1,8,64", help="routing temperatures tried on the held-out rows")
    ap.add_argument("--ood-share", type=float, default=0.02)
    ap.add_argument("--nice", type=int, default=10, help="run every stage under nice -n NICE (shared machines)")
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
    fit, val, test = f"{data}/fit.h5", f"{data}/val.h5", f"{data}/test.h5"
    common = ["--config", cfg, "--data.train", fit, "--data.eval", "", "--train.log_every", "100"]

    R.run("prep", [bin_, "prep", "fashion-mnist", "--out", data], done_if=test, log=f"{W}/prep.log")
    if not os.path.exists(val):
        split_holdout(f"{data}/train.h5", fit, val, args.holdout)
    E = args.expert_steps
    seed_total = args.seed_steps + E  # the experts finish the seed's schedule
    def seed_done():
        if not os.path.exists(f"{W}/seed/latest"):
            return 0
        with open(f"{W}/seed/latest") as f:
            return int(f.read().strip().split("_")[1].split(".")[0])
    seed_cmd = [bin_, "train", *common, "--train.steps", str(seed_total), "--train.stop_at", str(args.seed_steps),
                "--train.out", f"{W}/seed"]
    if 0 < seed_done() < args.seed_steps:  # interrupted (SIGTERM checkpoints): continue it
        os.rename(f"{W}/seed.log", f"{W}/seed.{seed_done()}.log")
        seed_cmd += ["--train.resume", "latest"]
    R.run("seed", R.mpirun(*seed_cmd), done_if=f"{W}/seed/latest" if seed_done() >= args.seed_steps else None,
          log=f"{W}/seed.log")
    seed_step = seed_done()
    cont_lr = seed_lr(cfg, seed_step, seed_total)
    R.run("embed", R.mpirun(bin_, "embed", "--checkpoint", f"{W}/seed", "--data", fit,
                            "--out", f"{W}/caption_emb.h5"), done_if=f"{W}/caption_emb.h5", log=f"{W}/embed.log")
    ns = [int(x) for x in args.experts.split(",")]
    rand_ns = [int(x) for x in args.rand.split(",") if x]
    cont = ["--train.init_from", f"{W}/seed", "--train.warmup", str(args.warmup), "--train.lr", f"{cont_lr:.6g}"]
    expert_opts = [*cont, "--train.steps", str(E), "--mode.ood_share", str(args.ood_share)]
    # Evaluation (right after each n is trained): the routing temperature of each
    # ensemble on val, then the test set.
    res, val_res = {}, {}
    def ev(arm, *extra, data_path=test, store=res, tag=""):
        out = f"{W}/eval{tag}_{arm}.json"
        R.run(f"eval{tag}_{arm}", R.mpirun(bin_, "eval", "--data", data_path, "--json", out, *extra), done_if=out,
              log=f"{W}/eval{tag}_{arm}.log")
        with open(out) as f:
            store[arm] = json.load(f)
    taus = [float(t) for t in args.taus.split(",")]
    chosen_tau = {}
    def choose_tau(arm, assign):
        scores = {}
        for t in taus:
            ev(f"{arm}_tau{t:g}", "--experts", f"{W}/{arm}", "--assign", assign, "--routing-temperature", f"{t:g}",
               data_path=val, store=val_res, tag="_val")
            scores[t] = val_res[f"{arm}_tau{t:g}"]["routed"]["zeroshot_top1"]
        chosen_tau[arm] = max(taus, key=lambda t: (scores[t], -t))  # ties: the sharper routing
        print(f"[{arm}] val zero-shot by tau: {scores} -> tau {chosen_tau[arm]:g}", flush=True)
    ev("seed", "--checkpoint", f"{W}/seed")
    for n in ns:
        R.run(f"cluster{n}", R.mpirun(bin_, "cluster", "--embeddings", f"{W}/caption_emb.h5", "--out", f"{W}/assign{n}.h5",
                                      "--fine", str(args.fine), "--experts", str(n), "--verbose", "0"),
              done_if=f"{W}/assign{n}.h5", log=f"{W}/cluster{n}.log")
        arms_n = [(f"mode{n}", f"{W}/assign{n}.h5")]
        if n in rand_ns:
            R.run(f"randsplit{n}", [split_bin, f"{W}/assign{n}.h5", f"{W}/rand{n}.h5", str(n)], done_if=f"{W}/rand{n}.h5",
                  log=f"{W}/randsplit{n}.log")
            arms_n.append((f"rand{n}", f"{W}/rand{n}.h5"))
        for arm, assign in arms_n:
            R.run(f"train_{arm}", R.mpirun(bin_, "train-experts", *common, *expert_opts, "--mode.assign", assign,
                                           "--train.out", f"{W}/{arm}"),
                  done_if=f"{W}/{arm}/expert_{n - 1}/latest", log=f"{W}/train_{arm}.log")
        R.run(f"train_eq{n}", R.mpirun(bin_, "train", *common, *cont, "--train.steps", str(n * E), "--train.out", f"{W}/eq{n}"),
              done_if=f"{W}/eq{n}/latest", log=f"{W}/train_eq{n}.log")
        A = f"{W}/assign{n}.h5"
        ev(f"eq{n}", "--checkpoint", f"{W}/eq{n}")
        choose_tau(f"mode{n}", A)
        ev(f"mode{n}", "--experts", f"{W}/mode{n}", "--assign", A, "--routing-temperature", f"{chosen_tau[f'mode{n}']:g}")
        if chosen_tau[f"mode{n}"] == 1.0:
            res[f"mode{n}_tau1"] = res[f"mode{n}"]
        else:
            ev(f"mode{n}_tau1", "--experts", f"{W}/mode{n}", "--assign", A)
        ev(f"mode{n}_metaclip", "--experts", f"{W}/mode{n}", "--assign", A, "--routing", "metaclip")
        if n in rand_ns:
            choose_tau(f"rand{n}", f"{W}/rand{n}.h5")
            ev(f"rand{n}", "--experts", f"{W}/rand{n}", "--assign", f"{W}/rand{n}.h5",
               "--routing-temperature", f"{chosen_tau[f'rand{n}']:g}")

    # Arms: single models, routed ensembles, uniform averages.
    def pts(x):
        return round(100.0 * x, 2)
    arms = {}
    def single(name, r):
        arms[name] = {k: pts(r[k]) for k in ("zeroshot_top1", "i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5")}
    single("seed", res["seed"])
    for n in sorted(ns):
        single(f"equal_compute_{n}", res[f"eq{n}"])
        single(f"mode{n}", res[f"mode{n}"]["routed"])
        single(f"mode{n}_paper_tau1", res[f"mode{n}_tau1"]["routed"])
        single(f"mode{n}_metaclip_routing", res[f"mode{n}_metaclip"]["routed"])
        single(f"mode{n}_uniform", res[f"mode{n}"]["uniform"])
        if n in rand_ns:
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
        "seed_schedule_steps": seed_total,
        "expert_steps": E,
        "continuation_lr": float(f"{cont_lr:.6g}"),
        "continuation_warmup": args.warmup,
        "holdout_rows": args.holdout,
        "batch_size": 256,
        "fine_clusters": args.fine,
        "ood_share": args.ood_share,
        "routing": "paper schedule, lambda 0.2, temperature chosen on the held-out rows (routing_temperature_*), "
                   "cosine-similarity ensemble (unless the arm says otherwise)",
        "routing_temperatures_tried": taus,
        "rand_split": "the same fine clusters dealt to the experts at random (balanced counts)",
        "units": "accuracy and recall in percent; gains in points",
    }
    for name, a in arms.items():
        out[f"zeroshot_{name}"] = a["zeroshot_top1"]
    for arm, t in chosen_tau.items():
        out[f"routing_temperature_{arm}"] = t
        out[f"val_zeroshot_by_temperature_{arm}"] = {f"{tt:g}": pts(val_res[f"{arm}_tau{tt:g}"]["routed"]["zeroshot_top1"])
                                                      for tt in taus}
    for n in sorted(ns):
        out[f"zeroshot_gain_vs_equal_compute_mode{n}"] = round(arms[f"mode{n}"]["zeroshot_top1"] - arms[f"equal_compute_{n}"]["zeroshot_top1"], 2)
        if n in rand_ns:
            out[f"zeroshot_gain_vs_rand_mode{n}"] = round(arms[f"mode{n}"]["zeroshot_top1"] - arms[f"rand{n}"]["zeroshot_top1"], 2)
        out[f"routing_weights_zeroshot_mode{n}"] = [round(w, 4) for w in res[f"mode{n}"]["weights_zeroshot"]]
        out[f"routing_weights_zeroshot_mode{n}_paper_tau1"] = [round(w, 4) for w in res[f"mode{n}_tau1"]["weights_zeroshot"]]
        out[f"routing_weights_zeroshot_mode{n}_metaclip"] = [round(w, 4) for w in res[f"mode{n}_metaclip"]["weights_zeroshot"]]
        out[f"class_routes_mode{n}"] = {r["class"]: [r["fine"], r["expert"], round(r["d2"], 4)]
                                        for r in res[f"mode{n}"].get("class_routes", [])}
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
    for n in sorted(ns):
        print(f"MoDE-{n} gain vs equal compute: {out[f'zeroshot_gain_vs_equal_compute_mode{n}']:+.2f} points"
              + (f"; vs Rand-{n}: {out[f'zeroshot_gain_vs_rand_mode{n}']:+.2f}" if n in rand_ns else ""))
    print(f"total {total} s; wrote {args.out_json}")

    # Plot.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    order = ["seed"]
    for n in sorted(ns):
        order += [f"equal_compute_{n}", f"mode{n}", f"mode{n}_paper_tau1", f"mode{n}_metaclip_routing", f"mode{n}_uniform"]
        order += [f"rand{n}"] if n in rand_ns else []
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    colors = {"seed": "gray", "equal": "tab:blue", "mode": "tab:green", "metaclip": "tab:olive", "tau1": "tab:cyan",
              "uniform": "tab:orange", "rand": "tab:red"}
    def color(nm):
        for k in ("metaclip", "tau1", "uniform", "equal", "rand", "mode", "seed"):
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
    axes[0].set_title(f"Fashion-MNIST zero-shot (seed {seed_step} of {seed_total} steps, experts {E} steps each)")
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

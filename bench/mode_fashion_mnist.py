#!/usr/bin/python3
"""MoDE on Fashion-MNIST with the tiny recipe (docs/mode.md §Benchmark: Fashion-MNIST, tiny recipe), driving the CLI.

Protocol (as the released MoDE code: experts finish the seed's schedule):
  * the training split is cut into fit (the first N - holdout rows, all training)
    and val (the last --holdout rows, only for choosing the routing temperature);
  * the seed is a run whose cosine schedule spans seed-steps + expert-steps, stopped
    (checkpointed) after --seed-steps: a partially trained model, mid-schedule;
  * every continuation from the seed (each expert, and the equal-compute model)
    starts from the seed's parameters with a fresh AdamW (--carry-optimizer: the
    seed's moments), --warmup steps up to the seed's learning rate at the stop,
    then a cosine to 0 over its own length:
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
from mode_encoder_clusters import consistency as cluster_consistency  # noqa: E402  (class consistency, purity, sizes)


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


def run_seed(R, args, bin_, split_bin, W, data, S, embeddings):
    """One training seed S: the seed model, the equal-compute models, and per caption
    embedding arm (the seed's text tower, a sentence encoder) the clusters, MoDE-n and
    Rand-n experts and their evaluations. Returns (results, val results, chosen taus,
    seed step, continuation lr, class consistency per arm)."""
    cfg = os.path.join(ROOT, "configs", "tiny.ini")
    fit, val, test = f"{data}/fit.h5", f"{data}/val.h5", f"{data}/test.h5"
    common = ["--config", cfg, "--data.train", fit, "--data.eval", "", "--train.log_every", "100",
              "--train.seed", str(S)]
    E = args.expert_steps
    # The experts finish the seed's schedule; --seed-schedule decouples the two (shorter
    # expert runs from the same seed model: the continuation lr is the seed's at its stop).
    seed_total = args.seed_schedule or (args.seed_steps + E)
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
    R.run(f"s{S}_seed", R.mpirun(*seed_cmd), done_if=f"{W}/seed/latest" if seed_done() >= args.seed_steps else None,
          log=f"{W}/seed.log")
    seed_step = seed_done()
    cont_lr = seed_lr(cfg, seed_step, seed_total)
    ns = [int(x) for x in args.experts.split(",")]
    rand_ns = [int(x) for x in args.rand.split(",") if x]
    cont = ["--train.init_from", f"{W}/seed", "--train.warmup", str(args.warmup), "--train.lr", f"{cont_lr:.6g}"]
    if args.carry_optimizer:  # the seed's AdamW moments too, as the released code's experts resume the seed run
        cont += ["--train.init_optimizer", "true"]
    expert_opts = [*cont, "--train.steps", str(E), "--mode.ood_share", str(args.ood_share)]
    # Evaluation (right after each n is trained): the routing temperature of each
    # ensemble on val, then the test set.
    res, val_res = {}, {}
    def ev(arm, *extra, data_path=test, store=res, tag=""):
        out = f"{W}/eval{tag}_{arm}.json"
        R.run(f"s{S}_eval{tag}_{arm}", R.mpirun(bin_, "eval", "--data", data_path, "--json", out, *extra), done_if=out,
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
        print(f"[s{S} {arm}] val zero-shot by tau: {scores} -> tau {chosen_tau[arm]:g}", flush=True)
    ev("seed", "--checkpoint", f"{W}/seed")
    for n in ns:
        R.run(f"s{S}_train_eq{n}", R.mpirun(bin_, "train", *common, *cont, "--train.steps", str(n * E),
                                            "--train.out", f"{W}/eq{n}"),
              done_if=f"{W}/eq{n}/latest", log=f"{W}/train_eq{n}.log")
        ev(f"eq{n}", "--checkpoint", f"{W}/eq{n}")
    import h5py
    with h5py.File(fit, "r") as f:
        fit_labels = f["labels"][()]
        n_classes = len(f["classnames"][()])
    consistency = {}
    for emb in embeddings:
        sfx = "" if emb == "seed" else f"_{emb}"  # the seed-text arms keep their historical names
        # The seed's text embeddings depend on the seed; a sentence encoder's do not (shared).
        emb_file = f"{W}/caption_emb.h5" if emb == "seed" else f"{os.path.dirname(W)}/caption_emb{sfx}.h5"
        src = ["--checkpoint", f"{W}/seed"] if emb == "seed" else ["--encoder", args.encoder]
        R.run(f"s{S}_embed{sfx}", R.mpirun(bin_, "embed", *src, "--data", fit, "--out", emb_file),
              done_if=emb_file, log=f"{os.path.dirname(emb_file)}/embed{sfx}.log")
        for n in ns:
            A = f"{W}/assign{n}{sfx}.h5"
            R.run(f"s{S}_cluster{n}{sfx}", R.mpirun(bin_, "cluster", "--embeddings", emb_file, "--out", A,
                                                    "--fine", str(args.fine), "--experts", str(n), "--seed", str(S),
                                                    "--balanced", args.balanced, "--coarse-balanced", args.balanced,
                                                    "--verbose", "0"),
                  done_if=A, log=f"{W}/cluster{n}{sfx}.log")
            consistency[f"mode{n}{sfx}"] = cluster_consistency(A, fit_labels, n_classes)
            arms_n = [(f"mode{n}{sfx}", A)]
            if n in rand_ns:
                RA = f"{W}/rand{n}{sfx}.h5"
                R.run(f"s{S}_randsplit{n}{sfx}", [split_bin, A, RA, str(n)], done_if=RA, log=f"{W}/randsplit{n}{sfx}.log")
                arms_n.append((f"rand{n}{sfx}", RA))
            for arm, assign in arms_n:
                R.run(f"s{S}_train_{arm}", R.mpirun(bin_, "train-experts", *common, *expert_opts, "--mode.assign", assign,
                                                    "--train.out", f"{W}/{arm}"),
                      done_if=f"{W}/{arm}/expert_{n - 1}/finished", log=f"{W}/train_{arm}.log")
            arm = f"mode{n}{sfx}"
            choose_tau(arm, A)
            ev(arm, "--experts", f"{W}/{arm}", "--assign", A, "--routing-temperature", f"{chosen_tau[arm]:g}")
            if chosen_tau[arm] == 1.0:
                res[f"{arm}_tau1"] = res[arm]
            else:
                ev(f"{arm}_tau1", "--experts", f"{W}/{arm}", "--assign", A)
            ev(f"{arm}_metaclip", "--experts", f"{W}/{arm}", "--assign", A, "--routing", "metaclip")
            if n in rand_ns:
                rarm = f"rand{n}{sfx}"
                choose_tau(rarm, f"{W}/{rarm}.h5")
                ev(rarm, "--experts", f"{W}/{rarm}", "--assign", f"{W}/{rarm}.h5",
                   "--routing-temperature", f"{chosen_tau[rarm]:g}")
    return res, val_res, chosen_tau, seed_step, cont_lr, consistency


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default="/tmp/mode_fmnist")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--seeds", default="0", help="training seeds (train.seed of every run, cluster --seed); "
                                                 "each gets its own seed model and arms")
    ap.add_argument("--embeddings", default="seed",
                    help="caption embeddings to cluster, comma-separated: seed (the seed CLIP's text tower), "
                         "minilm (the sentence encoder in --encoder)")
    ap.add_argument("--encoder", default=os.path.join(ROOT, ".cache", "models", "all-MiniLM-L6-v2"),
                    help="sentence encoder folder of the minilm arm (bash jobs/install_deps.sh --models)")
    ap.add_argument("--balanced", default="false", help="balanced k-means at both levels (the released code's choice)")
    ap.add_argument("--seed-steps", type=int, default=1500)
    ap.add_argument("--expert-steps", type=int, default=1000)
    ap.add_argument("--seed-schedule", type=int, default=0,
                    help="length of the seed's cosine schedule (0: seed-steps + expert-steps)")
    ap.add_argument("--warmup", type=int, default=50, help="warmup of the expert and continuation runs")
    ap.add_argument("--fine", type=int, default=128)
    ap.add_argument("--experts", default="4,2", help="n of the MoDE-n arms, in the order they are trained")
    ap.add_argument("--rand", default="2", help="n of the Rand-n arms")
    ap.add_argument("--holdout", type=int, default=5000, help="training rows held out to choose the routing temperature")
    ap.add_argument("--taus", default="1,8,64", help="routing temperatures tried on the held-out rows")
    ap.add_argument("--ood-share", type=float, default=0.02)
    ap.add_argument("--carry-optimizer", action="store_true",
                    help="every continuation (experts, equal compute) also takes the seed's AdamW moments "
                         "(train.init_optimizer); use with --warmup 0, as a resumed run does not warm up again")
    ap.add_argument("--nice", type=int, default=10, help="run every stage under nice -n NICE (shared machines)")
    ap.add_argument("--out-json", default=os.path.join(ROOT, "bench", "results", "mode_fashion_mnist.json"))
    ap.add_argument("--out-png", default=os.path.join(ROOT, "docs", "mode_fashion_mnist.png"))
    args = ap.parse_args()
    embeddings = [e for e in args.embeddings.split(",") if e]
    for e in embeddings:
        if e not in ("seed", "minilm"):
            sys.exit(f"--embeddings: unknown arm '{e}' (expected seed or minilm)")
    if "minilm" in embeddings and not os.path.exists(os.path.join(args.encoder, "model.safetensors")):
        sys.exit(f"--encoder {args.encoder}: no model.safetensors there (bash jobs/install_deps.sh --models)")
    seeds = [int(x) for x in args.seeds.split(",") if x]
    bin_ = os.path.join(ROOT, args.build, "curaclip") if not os.path.isabs(args.build) else os.path.join(args.build, "curaclip")
    split_bin = os.path.join(os.path.dirname(bin_), "mode_random_split")
    W = args.work
    data = os.path.join(W, "data")
    os.makedirs(W, exist_ok=True)
    R = Runner(args)
    t_all = time.time()
    fit, val, test = f"{data}/fit.h5", f"{data}/val.h5", f"{data}/test.h5"
    R.run("prep", [bin_, "prep", "fashion-mnist", "--out", data], done_if=test, log=f"{W}/prep.log")
    if not os.path.exists(val):
        split_holdout(f"{data}/train.h5", fit, val, args.holdout)
    ns = [int(x) for x in args.experts.split(",")]
    rand_ns = [int(x) for x in args.rand.split(",") if x]
    sfxs = {e: ("" if e == "seed" else f"_{e}") for e in embeddings}
    taus = [float(t) for t in args.taus.split(",")]

    def pts(x):
        return round(100.0 * x, 2)
    per_seed = {}
    for S in seeds:
        WS = f"{W}/s{S}"
        os.makedirs(WS, exist_ok=True)
        res, val_res, chosen_tau, seed_step, cont_lr, cons = run_seed(R, args, bin_, split_bin, WS, data, S, embeddings)
        arms = {}
        def single(name, r):
            arms[name] = {k: pts(r[k]) for k in ("zeroshot_top1", "i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5")}
        single("seed", res["seed"])
        for n in sorted(ns):
            single(f"equal_compute_{n}", res[f"eq{n}"])
            for sfx in sfxs.values():
                single(f"mode{n}{sfx}", res[f"mode{n}{sfx}"]["routed"])
                single(f"mode{n}{sfx}_paper_tau1", res[f"mode{n}{sfx}_tau1"]["routed"])
                single(f"mode{n}{sfx}_metaclip_routing", res[f"mode{n}{sfx}_metaclip"]["routed"])
                single(f"mode{n}{sfx}_uniform", res[f"mode{n}{sfx}"]["uniform"])
                if n in rand_ns:
                    single(f"rand{n}{sfx}", res[f"rand{n}{sfx}"]["routed"])
                    single(f"rand{n}{sfx}_uniform", res[f"rand{n}{sfx}"]["uniform"])
                for c, e in enumerate(res[f"mode{n}{sfx}"]["experts"]):
                    single(f"mode{n}{sfx}_expert{c}_alone", e)
        o = {"seed_checkpoint_step": seed_step, "continuation_lr": float(f"{cont_lr:.6g}")}
        for name, a in arms.items():
            o[f"zeroshot_{name}"] = a["zeroshot_top1"]
        for arm, t in chosen_tau.items():
            o[f"routing_temperature_{arm}"] = t
            o[f"val_zeroshot_by_temperature_{arm}"] = {f"{tt:g}": pts(val_res[f"{arm}_tau{tt:g}"]["routed"]["zeroshot_top1"])
                                                        for tt in taus}
        for n in sorted(ns):
            for sfx in sfxs.values():
                m = f"mode{n}{sfx}"
                o[f"zeroshot_gain_vs_equal_compute_{m}"] = round(arms[m]["zeroshot_top1"] - arms[f"equal_compute_{n}"]["zeroshot_top1"], 2)
                if n in rand_ns:
                    o[f"zeroshot_gain_vs_rand_{m}"] = round(arms[m]["zeroshot_top1"] - arms[f"rand{n}{sfx}"]["zeroshot_top1"], 2)
                o[f"routing_weights_zeroshot_{m}"] = [round(w, 4) for w in res[m]["weights_zeroshot"]]
                o[f"routing_weights_zeroshot_{m}_paper_tau1"] = [round(w, 4) for w in res[f"{m}_tau1"]["weights_zeroshot"]]
                o[f"routing_weights_zeroshot_{m}_metaclip"] = [round(w, 4) for w in res[f"{m}_metaclip"]["weights_zeroshot"]]
                o[f"class_routes_{m}"] = {r["class"]: [r["fine"], r["expert"], round(r["d2"], 4)]
                                          for r in res[m].get("class_routes", [])}
                o[f"clusters_{m}"] = cons[m]
        o["arms"] = arms
        per_seed[str(S)] = o

    # Across seeds: mean and spread of every arm, the gains per seed, the goals.
    import statistics
    def mean_sd(xs):
        return {"mean": round(statistics.mean(xs), 2), "sd": round(statistics.stdev(xs), 2) if len(xs) > 1 else 0.0,
                "per_seed": xs}
    first = per_seed[str(seeds[0])]
    summary = {"zeroshot": {a: mean_sd([per_seed[str(S)]["arms"][a]["zeroshot_top1"] for S in seeds]) for a in first["arms"]}}
    for n in sorted(ns):
        for e, sfx in sfxs.items():
            m = f"mode{n}{sfx}"
            g_eq = [per_seed[str(S)][f"zeroshot_gain_vs_equal_compute_{m}"] for S in seeds]
            summary[f"gain_vs_equal_compute_{m}"] = mean_sd(g_eq)
            summary[f"class_consistency_{m}"] = mean_sd([per_seed[str(S)][f"clusters_{m}"]["class_consistency"] for S in seeds])
            summary[f"class_name_experts_{m}"] = {str(S): sorted({v[1] for v in per_seed[str(S)][f"class_routes_{m}"].values()})
                                                  for S in seeds}
            if n in rand_ns:
                g_r = [per_seed[str(S)][f"zeroshot_gain_vs_rand_{m}"] for S in seeds]
                summary[f"gain_vs_rand_{m}"] = mean_sd(g_r)
                summary[f"clustered_beats_rand_every_seed_{m}"] = all(g > 0 for g in g_r)

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
        "seeds": seeds,
        "embeddings": {e: ("the seed CLIP's text tower (curaclip embed --checkpoint seed)" if e == "seed" else
                           f"sentence encoder {os.path.basename(args.encoder.rstrip('/'))} (curaclip embed --encoder)")
                       for e in embeddings},
        "arm_suffix": {e: sfx for e, sfx in sfxs.items()},
        "clustering": ("balanced k-means at both levels" if args.balanced.lower() in ("1", "true", "yes", "on")
                       else "k-means at both levels (not balanced)") + f", m = {args.fine} fine",
        "seed_steps": args.seed_steps,
        "seed_schedule_steps": args.seed_schedule or (args.seed_steps + args.expert_steps),
        "expert_steps": args.expert_steps,
        "continuation_warmup": args.warmup,
        "continuation_optimizer": "the seed's AdamW moments (train.init_optimizer)" if args.carry_optimizer
                                  else "fresh AdamW",
        "holdout_rows": args.holdout,
        "batch_size": 256,
        "fine_clusters": args.fine,
        "ood_share": args.ood_share,
        "routing": "paper schedule, lambda 0.2, temperature chosen on the held-out rows (routing_temperature_*), "
                   "cosine-similarity ensemble (unless the arm says otherwise)",
        "routing_temperatures_tried": taus,
        "rand_split": "the same fine clusters dealt to the experts at random (balanced counts)",
        "class_consistency": "per class, the share of its fit examples in its most common expert, averaged over the classes",
        "class_routes": "class name -> [fine cluster, expert, squared distance] of its routing",
        "units": "accuracy and recall in percent; gains in points",
        "summary": summary,
        "per_seed": per_seed,
        "stage_seconds": R.stage_s,
        "total_seconds": total,
    }
    os.makedirs(os.path.dirname(args.out_json), exist_ok=True)
    with open(args.out_json + ".tmp", "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    os.replace(args.out_json + ".tmp", args.out_json)

    # Table: the 3-seed mean (sd) of every arm, then the gains.
    print(f"\n{'arm':36s} {'zero-shot mean':>14s} {'sd':>5s}   per seed")
    for name, v in summary["zeroshot"].items():
        print(f"{name:36s} {v['mean']:14.2f} {v['sd']:5.2f}   {v['per_seed']}")
    for n in sorted(ns):
        for e, sfx in sfxs.items():
            m = f"mode{n}{sfx}"
            line = (f"MoDE-{n} [{e}]: class consistency {summary[f'class_consistency_{m}']['mean']:.3f}; gain vs equal "
                    f"compute {summary[f'gain_vs_equal_compute_{m}']['mean']:+.2f} {summary[f'gain_vs_equal_compute_{m}']['per_seed']}")
            if n in rand_ns:
                line += f"; vs Rand-{n} {summary[f'gain_vs_rand_{m}']['mean']:+.2f} {summary[f'gain_vs_rand_{m}']['per_seed']}"
            print(line)
    print(f"total {total} s; wrote {args.out_json}")

    # Plot: mean zero-shot of the main arms, one error bar per seed spread.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    order = ["seed"]
    for n in sorted(ns):
        order.append(f"equal_compute_{n}")
        for sfx in sfxs.values():
            order += [f"mode{n}{sfx}", f"mode{n}{sfx}_uniform"] + ([f"rand{n}{sfx}"] if n in rand_ns else [])
    def color(nm):
        if nm == "seed":
            return "gray"
        if nm.startswith("equal"):
            return "tab:blue"
        base = {"mode": "tab:green", "rand": "tab:red"}[nm[:4]]
        if "uniform" in nm:
            base = "tab:orange"
        return base
    ys = [summary["zeroshot"][a]["mean"] for a in order]
    sd = [summary["zeroshot"][a]["sd"] for a in order]
    fig, ax = plt.subplots(figsize=(13, 4.8))
    bars = ax.bar(range(len(order)), ys, yerr=sd, color=[color(a) for a in order], capsize=3)
    for b, a in zip(bars, order):
        if "_minilm" in a:
            b.set_hatch("//")
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("zero-shot top-1 (%), mean over seeds")
    ax.set_ylim(max(0, min(ys) - 5), min(100, max(ys) + 3))
    for i, y in enumerate(ys):
        ax.text(i, y + 0.3, f"{y:.2f}", ha="center", fontsize=7)
    ax.set_title(f"Fashion-MNIST zero-shot, seeds {seeds} (hatched: captions clustered by the sentence encoder)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out_png), exist_ok=True)
    fig.savefig(args.out_png, dpi=110)
    print(f"wrote {args.out_png}")


if __name__ == "__main__":
    main()

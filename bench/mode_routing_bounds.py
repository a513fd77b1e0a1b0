#!/usr/bin/python3
"""What any routing could get from a set of trained MoDE experts (docs/mode.md §What routing could reach).

The MoDE benchmark (bench/mode_fashion_mnist.py) leaves, per training seed, the
experts of each arm and the equal-compute model in its work folder. This script
evaluates them on the test set again (`curaclip eval`, which reports every class's
recall, `zeroshot_per_class_recall`) and computes, per seed and arm:

  * each expert alone, and the routed and uniform ensembles (as the benchmark);
  * `home_expert`: every test image classified by the expert that holds most of its
    class's training rows (an oracle: routing per image by the true class, which no
    deployable rule has). On a balanced test set this is the mean over classes of
    recall_{home(y)}(y);
  * `best_expert_per_class`: every image classified by the expert that is best on
    its class (an upper bound for any rule that gives each image one expert);
  * `routed_per_class`: the ensemble with each class name routed on its own
    (`eval --routing-scope class`), its temperature chosen on the held-out rows
    (val.h5) from --class-taus, as the benchmark chooses the task-level one;
  * the equal-compute model's accuracy and per-class recall beside them.

If even the bounds stay below equal compute + 1 point, no routing of these experts
meets the benchmark's goal: what is missing is in the experts, not in the routing.

    /usr/bin/python3 bench/mode_routing_bounds.py --build build \\
        --run plain=/tmp/mode3 --run ood0.5=/tmp/mode_ood --seeds 0,1,2 --n 4 --emb minilm
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_common import git_commit, load_average, machine, write_result  # noqa: E402
from mode_encoder_clusters import consistency as cluster_consistency  # noqa: E402
from mode_fashion_mnist import Runner  # noqa: E402  (the benchmark's mpirun line)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--run", action="append", required=True,
                    help="NAME=WORK[@EMB]: a work folder of bench/mode_fashion_mnist.py, and the caption "
                         "embedding arm if not --emb (repeatable)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n", type=int, default=4, help="experts of the MoDE arm (mode<n>)")
    ap.add_argument("--emb", default="minilm", help="caption embedding arm: minilm or seed")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--class-taus", default="1,0.125,0.015625",
                    help="routing temperatures tried on val.h5 for --routing-scope class (one class name is a task "
                         "of K = 1: sharper than 1 is needed to route it mostly to one expert)")
    ap.add_argument("--out-json", default=os.path.join(ROOT, "bench", "results", "mode_routing_bounds.json"))
    args = ap.parse_args()
    import h5py
    import numpy as np
    bin_ = os.path.join(args.build if os.path.isabs(args.build) else os.path.join(ROOT, args.build), "curaclip")
    runner = Runner(argparse.Namespace(ranks=args.ranks, nice=0))

    def evaluate(out, *what, data):
        if not os.path.exists(out):
            r = subprocess.run(runner.mpirun(bin_, "eval", "--data", data, "--json", out, *what), capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"eval {' '.join(what)} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        with open(out) as f:
            return json.load(f)

    pts = lambda x: round(100.0 * float(x), 2)  # noqa: E731
    results, load_before = {}, load_average()
    for spec in args.run:
        name, W = spec.split("=", 1)
        W, emb = W.split("@", 1) if "@" in W else (W, args.emb)
        sfx = "" if emb == "seed" else f"_{emb}"
        arm = f"mode{args.n}{sfx}"
        per_seed = {}
        for S in [int(s) for s in args.seeds.split(",") if s]:
            WS = f"{W}/s{S}"
            data = os.path.realpath(f"{W}/data")
            with h5py.File(f"{data}/fit.h5", "r") as f:
                labels = f["labels"][()]
                K = len(f["classnames"][()])
            home = np.array(cluster_consistency(f"{WS}/assign{args.n}{sfx}.h5", labels, K)["main_expert_per_class"])
            # The routing temperature the benchmark chose on the held-out rows (its test eval's).
            with open(f"{WS}/eval_{arm}.json") as f:
                tau = json.load(f)["routing"]["temperature"]
            ens = evaluate(f"{WS}/eval_bounds_{arm}.json", "--experts", f"{WS}/{arm}", "--assign",
                           f"{WS}/assign{args.n}{sfx}.h5", "--routing-temperature", f"{tau:g}",
                           data=f"{data}/test.h5")
            experts = ["--experts", f"{WS}/{arm}", "--assign", f"{WS}/assign{args.n}{sfx}.h5", "--routing-scope", "class"]
            val_by_tau = {t: evaluate(f"{WS}/eval_bounds_val_cls_{arm}_tau{t}.json", *experts, "--routing-temperature", t,
                                      data=f"{data}/val.h5")["routed"]["zeroshot_top1"]
                          for t in args.class_taus.split(",")}
            tau_cls = max(val_by_tau, key=lambda t: (val_by_tau[t], -float(t)))  # ties: the sharper
            cls = evaluate(f"{WS}/eval_bounds_cls_{arm}.json", *experts, "--routing-temperature", tau_cls,
                           data=f"{data}/test.h5")
            eq = evaluate(f"{WS}/eval_bounds_eq{args.n}.json", "--checkpoint", f"{WS}/eq{args.n}", data=f"{data}/test.h5")
            with h5py.File(f"{data}/test.h5", "r") as f:
                test_counts = np.bincount(f["labels"][()], minlength=K)
            w = test_counts / test_counts.sum()  # accuracy = sum_y share(y) * recall(y)
            R = np.array([e["zeroshot_per_class_recall"] for e in ens["experts"]], dtype=float)  # [n, K]
            home_acc = float((w * R[home, np.arange(K)]).sum())
            best_acc = float((w * R.max(0)).sum())
            eq_acc = float(eq["zeroshot_top1"])
            per_seed[str(S)] = {
                "home_expert_per_class": [int(h) for h in home],
                "experts_alone": [pts(e["zeroshot_top1"]) for e in ens["experts"]],
                "expert_per_class_recall": [[pts(x) for x in r] for r in R],
                "equal_compute_per_class_recall": [pts(x) for x in eq["zeroshot_per_class_recall"]],
                "routing_temperature": tau,
                "routed": pts(ens["routed"]["zeroshot_top1"]),
                "uniform": pts(ens["uniform"]["zeroshot_top1"]),
                "routed_per_class": pts(cls["routed"]["zeroshot_top1"]),
                "routing_temperature_per_class": float(tau_cls),
                "val_routed_per_class_by_temperature": {t: pts(v) for t, v in val_by_tau.items()},
                "home_expert": pts(home_acc),
                "best_expert_per_class": pts(best_acc),
                "equal_compute": pts(eq_acc),
            }
        keys = ["routed", "uniform", "routed_per_class", "home_expert", "best_expert_per_class", "equal_compute"]
        mean = {k: round(float(np.mean([v[k] for v in per_seed.values()])), 2) for k in keys}
        results[name] = {"work": W, "arm": arm, "per_seed": per_seed, "mean": mean,
                         "gap_to_equal_compute": {k: round(mean[k] - mean["equal_compute"], 2) for k in keys[:-1]}}

    out = {"name": "mode_routing_bounds", "date": datetime.date.today().isoformat(),
           "command": "/usr/bin/python3 bench/mode_routing_bounds.py " + " ".join(sys.argv[1:]),
           "machine": machine(), "load_average_before": load_before, "git_commit": git_commit(),
           "units": "zero-shot top-1 on the test set, percent; gaps in points",
           "home_expert": "each image classified by the expert holding most of its class's training rows (oracle)",
           "best_expert_per_class": "each image classified by the expert best on its class (bound for one expert "
                                    "per image)",
           "results": results}
    write_result(args.out_json, out)
    print(f"{'run':12s} {'routed':>8s} {'uniform':>8s} {'per class':>10s} {'home expert':>12s} {'best/class':>11s} "
          f"{'equal compute':>14s}")
    for name, r in results.items():
        m = r["mean"]
        print(f"{name:12s} {m['routed']:8.2f} {m['uniform']:8.2f} {m['routed_per_class']:10.2f} {m['home_expert']:12.2f} "
              f"{m['best_expert_per_class']:11.2f} {m['equal_compute']:14.2f}")
    print(f"(means over seeds {args.seeds}, MoDE-{args.n})")


if __name__ == "__main__":
    main()

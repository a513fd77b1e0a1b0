#!/usr/bin/python3
"""Two builds of curaclip side by side on the same work: is a refactor free? (docs/architecture.md)

Runs, for each binary and each round (the binaries alternate within a round, so load
changes hit both), through the CLI on the Fashion-MNIST data of `curaclip prep`:
  * train: the tiny recipe (configs/tiny.ini), --steps steps, no evaluation;
  * jest:  the tiny JEST recipe (configs/tiny_jest.ini) against a reference run's
           cached embeddings (--reference RUN holding train_emb.h5), --steps steps;
  * cluster: MoDE's two-level k-means (m = 128 fine -> 4 coarse) of --embeddings.
Every stage runs under `mpirun -n RANKS` with OMP_NUM_THREADS = cores / ranks.
Reports per stage the median over rounds of examples/s (train, jest: the median of
the metrics windows after the first) or of the wall time (cluster), the ratio B / A
of those medians and the median of the per-round ratios (the figure to quote),
and whether both builds computed the same thing (the last logged loss, bit for bit;
the cluster side files' assignments). Writes bench/results/compare_builds.json.

    /usr/bin/python3 bench/compare_builds.py --a OLD/curaclip --b build/curaclip \\
        --data /tmp/mj/data --reference /tmp/mj/old/ref --rounds 3
"""
import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_common import git_commit, load_average, machine, read_metrics, write_result  # noqa: E402


def run(cmd, log):
    t0 = time.time()
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n  see {log}")
    return time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="the curaclip binary before")
    ap.add_argument("--b", required=True, help="the curaclip binary after")
    ap.add_argument("--label-a", default="before")
    ap.add_argument("--label-b", default="after")
    ap.add_argument("--data", default="", help="a `curaclip prep fashion-mnist` folder (train.h5; train and jest)")
    ap.add_argument("--reference", default="", help="a reference run holding train_emb.h5 (jest stage)")
    ap.add_argument("--embeddings", default="", help="caption embeddings for the cluster stage "
                                                     "(default: the reference's train_emb.h5)")
    ap.add_argument("--stages", default="train,jest,cluster", help="which stages to run, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--work", default="/tmp/curaclip_compare_builds")
    ap.add_argument("--out-json", default=os.path.join(ROOT, "bench", "results", "compare_builds.json"))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // args.ranks)
    mpi = ["mpirun", "-n", str(args.ranks), "--allow-run-as-root", "--bind-to", "none", "-x", f"OMP_NUM_THREADS={threads}"]
    emb = args.embeddings or (os.path.join(args.reference, "train_emb.h5") if args.reference else "")
    bins = {"a": args.a, "b": args.b}
    wanted = set(args.stages.split(","))
    stages = [s for s in ("train", "jest", "cluster") if s in wanted and (s == "train" or (args.reference if s == "jest" else emb))]
    got = {s: {k: [] for k in bins} for s in stages}
    same = {s: True for s in stages}
    loads = []
    log_every = max(1, args.steps // 8)
    for rnd in range(args.rounds):
        for s in stages:
            last = {}
            for k in (("a", "b") if rnd % 2 == 0 else ("b", "a")):
                out = os.path.join(args.work, f"{s}_{k}_{rnd}")
                subprocess.run(["rm", "-rf", out, out + ".h5"])  # `cluster` never overwrites its side file
                loads.append(load_average())
                common = ["--data.train", os.path.join(args.data, "train.h5"), "--data.eval", "",
                          "--train.steps", str(args.steps), "--train.log_every", str(log_every), "--train.out", out]
                if s == "train":
                    run([*mpi, bins[k], "train", "--config", os.path.join(ROOT, "configs", "tiny.ini"), *common],
                        out + ".log")
                elif s == "jest":
                    ref = os.path.join(args.reference, open(os.path.join(args.reference, "latest")).read().strip())
                    run([*mpi, bins[k], "train", "--config", os.path.join(ROOT, "configs", "tiny_jest.ini"), *common,
                         "--jest.reference", ref, "--jest.reference_cache", emb], out + ".log")
                if s in ("train", "jest"):
                    rows, _ = read_metrics(out)
                    rates = [r["examples_per_s"] for r in rows[1:]] or [rows[-1]["examples_per_s"]]
                    got[s][k].append(statistics.median(rates))
                    last[k] = rows[-1]["loss"]
                else:
                    wall = run([*mpi, bins[k], "cluster", "--embeddings", emb, "--out", out + ".h5", "--fine", "128",
                                "--experts", "4", "--seed", "0", "--verbose", "0"], out + ".log")
                    got[s][k].append(wall)
                    import h5py
                    with h5py.File(out + ".h5", "r") as f:
                        last[k] = f["assign/expert"][()].tobytes()
                print(f"round {rnd} {s} {k}: {got[s][k][-1]:.3f}", flush=True)
            same[s] = same[s] and last["a"] == last["b"]
    res = {"name": "compare_builds", "date": datetime.date.today().isoformat(),
           "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
           "machine": machine(), "git_commit": git_commit(), "a": args.a, "b": args.b,
           "label_a": args.label_a, "label_b": args.label_b, "ranks": args.ranks, "threads_per_rank": threads,
           "rounds": args.rounds, "steps": args.steps,
           "load_average_1min": {"min": min(loads), "max": max(loads)}, "stages": {}}
    print(f"\n{'stage':8} {'unit':12} {args.label_a:>12} {args.label_b:>12} {'b/a':>7} {'paired':>7}  same result")
    for s in stages:
        a, b = statistics.median(got[s]["a"]), statistics.median(got[s]["b"])
        unit = "s (wall)" if s == "cluster" else "examples/s"
        ratio = b / a
        # The rounds pair a and b under the same load: the median of the per-round ratios
        # is the figure to quote (a load spike in one round moves one pair, not a median).
        paired = statistics.median(y / x for x, y in zip(got[s]["a"], got[s]["b"]))
        res["stages"][s] = {"unit": unit, "a": got[s]["a"], "b": got[s]["b"], "median_a": round(a, 3),
                            "median_b": round(b, 3), "ratio_b_over_a": round(ratio, 4),
                            "median_paired_ratio_b_over_a": round(paired, 4), "same_result": same[s]}
        print(f"{s:8} {unit:12} {a:12.3f} {b:12.3f} {ratio:7.3f} {paired:7.3f}  {same[s]}")
    print(f"load average (1 min) while measuring: {min(loads)} .. {max(loads)}")
    write_result(args.out_json, res)


if __name__ == "__main__":
    main()

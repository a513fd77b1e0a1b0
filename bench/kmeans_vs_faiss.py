#!/usr/bin/python3
"""curaclip k-means vs FAISS CPU k-means, side by side in one run.

The same points (clustered synthetic data, L2-normalized like caption embeddings)
and the same initial centers go to both; both run exactly --iters Lloyd iterations
(assignment + update) with the same thread count; the final centers of each are
scored by the same evaluation (FAISS IndexFlatL2 search over all points).
curaclip runs as a child process (build-*/bench_kmeans), FAISS in-process.
Also: curaclip on 1 and 2 MPI ranks (one thread each).

  /usr/bin/python3 bench/kmeans_vs_faiss.py --build build-mode [--n 200000 --dim 64 --k 256,1024 --iters 10 --threads 2]

Writes bench/results/kmeans_vs_faiss.json and prints a table. FAISS: Debian
python3-faiss (a dev tool for this benchmark, not a build dependency).
"""
import argparse, datetime, json, os, subprocess, sys, tempfile, time

# The same OpenMP wait policy for both sides, set before FAISS's OpenMP runtime starts:
# with the default (spinning) policy, idle OpenMP threads burn the cores that BLAS and
# the other side's threads need whenever the machine has other load (measured: 2.8x
# slower curaclip runs at load 3 on 2 cores). Override with OMP_WAIT_POLICY=active.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np
import faiss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_common import cpu_name, git_commit  # noqa: E402


def make_data(n, dim, seed):
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((2000, dim)).astype(np.float32)
    x = topics[rng.integers(0, len(topics), n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def objective(x, centers):
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(centers, dtype=np.float32))
    d, _ = index.search(x, 1)
    return float(d.astype(np.float64).sum())


def run_curaclip(binary, pts, init, n, dim, k, iters, ranks, threads, tmp):
    out = os.path.join(tmp, "centers_%d_%d.f32" % (k, ranks))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = [binary, "--points", pts, "--n", str(n), "--dim", str(dim), "--init", init, "--k", str(k),
           "--iters", str(iters), "--out", out]
    if ranks > 1:
        cmd = ["mpirun", "-n", str(ranks), "--oversubscribe", "--bind-to", "none"] + cmd
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit("bench_kmeans failed:\n" + res.stdout + res.stderr)
    line = [l for l in res.stdout.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    r["centers"] = np.fromfile(out, dtype=np.float32).reshape(k, dim)
    return r


def run_faiss(x, init, k, iters, threads):
    faiss.omp_set_num_threads(threads)
    km = faiss.Kmeans(x.shape[1], k, niter=iters, seed=1, max_points_per_centroid=10**9,
                      min_points_per_centroid=1, verbose=False, spherical=False)
    t0 = time.perf_counter()
    km.train(x, init_centroids=init)
    sec = time.perf_counter() - t0
    return {"seconds": sec, "centers": km.centroids.copy()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build-mode")
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", default="256,1024")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs for each timing (interleaved)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "kmeans_vs_faiss.json"))
    args = ap.parse_args()
    binary = os.path.join(ROOT, args.build, "bench_kmeans")
    if not os.path.exists(binary):
        sys.exit("no %s: build it first (cmake --build %s --target bench_kmeans)" % (binary, args.build))
    load_before = os.getloadavg()
    x = make_data(args.n, args.dim, args.seed)
    figures, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        pts = os.path.join(tmp, "points.f32")
        x.tofile(pts)
        for k in [int(v) for v in args.k.split(",")]:
            rng = np.random.default_rng(args.seed + k)
            init = np.ascontiguousarray(x[np.sort(rng.choice(args.n, k, replace=False))])
            init_path = os.path.join(tmp, "init_%d.f32" % k)
            init.tofile(init_path)
            # Repeats interleaved (curaclip, FAISS, 1 rank, 2 ranks, curaclip, ...) so that a
            # change in the machine's load hits both sides alike; best of each.
            load_k = os.getloadavg()
            runs = {"ours": [], "theirs": [], "r1": [], "r2": []}
            for _ in range(args.repeats):
                runs["ours"].append(run_curaclip(binary, pts, init_path, args.n, args.dim, k, args.iters, 1,
                                                 args.threads, tmp))
                runs["theirs"].append(run_faiss(x, init, k, args.iters, args.threads))
                runs["r1"].append(run_curaclip(binary, pts, init_path, args.n, args.dim, k, args.iters, 1, 1, tmp))
                runs["r2"].append(run_curaclip(binary, pts, init_path, args.n, args.dim, k, args.iters, 2, 1, tmp))
            ours, theirs, r1, r2 = (min(runs[key], key=lambda r: r["seconds"]) for key in ("ours", "theirs", "r1", "r2"))
            obj_ours, obj_faiss = objective(x, ours["centers"]), objective(x, theirs["centers"])
            gap = (obj_ours - obj_faiss) / obj_faiss
            same_12 = bool(np.array_equal(r1["centers"], r2["centers"]))
            f = {
                "seconds_curaclip": round(ours["seconds"], 4), "seconds_faiss": round(theirs["seconds"], 4),
                "speed_ratio_vs_faiss": round(theirs["seconds"] / ours["seconds"], 3),
                "objective_curaclip": obj_ours, "objective_faiss": obj_faiss,
                "objective_rel_gap_vs_faiss": gap,
                "seconds_1rank_1thread": round(r1["seconds"], 4), "seconds_2ranks_1thread": round(r2["seconds"], 4),
                "mpi_speedup_2_vs_1": round(r1["seconds"] / r2["seconds"], 3),
                "centers_identical_1_vs_2_ranks": same_12,
                "all_seconds_curaclip": [round(r["seconds"], 4) for r in runs["ours"]],
                "all_seconds_faiss": [round(r["seconds"], 4) for r in runs["theirs"]],
                "load_average_at_start": [round(v, 2) for v in load_k],
            }
            figures["k%d" % k] = f
            rows.append((k, f))
    load_after = os.getloadavg()
    figures_flat = {}
    for key, f in figures.items():
        for name, v in f.items():
            figures_flat["%s_%s" % (name, key)] = v
    result = {
        "name": "kmeans_vs_faiss",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "/usr/bin/python3 bench/kmeans_vs_faiss.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "gpu": None},
        "git_commit": git_commit(),
        "setup": {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "n": args.n, "dim": args.dim, "iters": args.iters, "threads": args.threads, "repeats_best_of": args.repeats,
                  "faiss_version": getattr(faiss, "__version__", "?"),
                  "data": "synthetic: 2000 Gaussian topics + noise, L2-normalized (float32)",
                  "init": "the same k data points given to both",
                  "objective": "sum of squared distances of every point to its nearest final center (FAISS IndexFlatL2 for both)"},
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "loaded": bool(load_before[0] > 0.5 * (os.cpu_count() or 1)),
        **figures_flat,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
        fh.write("\n")
    print("k-means, n=%d dim=%d iters=%d threads=%d (load avg before %.2f)" % (args.n, args.dim, args.iters, args.threads, load_before[0]))
    print("%6s %10s %10s %8s %14s %14s %10s %9s %9s %7s" % ("k", "curaclip s", "faiss s", "ratio", "obj curaclip", "obj faiss",
                                                         "rel gap", "1 rank s", "2 ranks s", "speedup"))
    for k, f in rows:
        print("%6d %10.3f %10.3f %8.3f %14.6e %14.6e %10.2e %9.3f %9.3f %7.2f" % (
            k, f["seconds_curaclip"], f["seconds_faiss"], f["speed_ratio_vs_faiss"], f["objective_curaclip"],
            f["objective_faiss"], f["objective_rel_gap_vs_faiss"], f["seconds_1rank_1thread"], f["seconds_2ranks_1thread"],
            f["mpi_speedup_2_vs_1"]))
    print("wrote", args.out)


if __name__ == "__main__":
    main()

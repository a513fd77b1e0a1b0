#!/usr/bin/python3
"""MoDE clusters from a sentence encoder vs the seed's text tower (issue 14), the cheap part:
embed + cluster + routes only, no expert training, and the throughput of `embed --encoder`.

On the Fashion-MNIST test captions (10k, clean), for each embedding arm
  * seed:   `curaclip embed --checkpoint SEED` (the seed CLIP's text tower, as bench/mode_fashion_mnist.py)
  * minilm: `curaclip embed --encoder .cache/models/all-MiniLM-L6-v2` (src/encoder/)
and each clustering (m = --fine fine -> n = --experts coarse):
  * kmeans:   k-means at both levels (curaclip's default)
  * balanced: balanced k-means at both levels (--balanced true --coarse-balanced true,
              the released MoDE code's choice)
it reports
  * class consistency: for each class, the share of its examples in its most common
    expert, averaged over the classes (1.0: no class is split across experts);
  * class purity: for each expert, the share of its most common class, weighted by size;
  * each class name's route (nearest fine center -> expert), from `curaclip eval --experts`
    with the seed checkpoint standing in for every expert (routing only depends on the
    side file and the routing model/encoder; the expert accuracies are not used).
Throughput: `curaclip embed --encoder` on 2 ranks (1 thread each) vs sentence-transformers
(bench/.venv, torch with 2 threads) on the same captions (the distinct test captions, so
curaclip's de-duplication of repeated texts does not count), same batch size; captions/s
of the embedding alone (model loading excluded on both sides), best of --rounds.

The seed comes from bench/mode_fashion_mnist.py's work folder layout (WORK/seed, WORK/data);
if absent it is trained with that script's command. Writes bench/results/mode_encoder_clusters.json.

    /usr/bin/python3 bench/mode_encoder_clusters.py --build build --work /tmp/mode_fmnist
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
from bench_common import git_commit, load_average, machine  # noqa: E402

MODEL = os.path.join(ROOT, ".cache", "models", "all-MiniLM-L6-v2")
VENV_PY = os.path.join(ROOT, "bench", ".venv", "bin", "python")


def peer_main(argv):
    """sentence-transformers on a caption file: prints one JSON line {"seconds", "n"}."""
    from bench_common import ensure_venv
    ensure_venv(__file__, ["sentence-transformers"])  # a no-op when run by bench/.venv's Python
    ap = argparse.ArgumentParser()
    ap.add_argument("--captions")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--rounds", type=int)
    a = ap.parse_args(argv)
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(a.threads)
    caps = json.load(open(a.captions))
    model = SentenceTransformer(MODEL, device="cpu")
    best = None
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        model.encode(caps, batch_size=a.batch, convert_to_numpy=True, normalize_embeddings=True)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    print(json.dumps({"seconds": best, "n": len(caps), "torch": torch.__version__,
                      "sentence_transformers": __import__("sentence_transformers").__version__}))


def mpirun(ranks, threads, *cmd):
    extra = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    if ranks > (os.cpu_count() or 1):
        extra.append("--oversubscribe")
    return ["mpirun", "-n", str(ranks), *extra, "--bind-to", "none", "-x", f"OMP_NUM_THREADS={threads}", *cmd]


def run(name, cmd, done_if=None, log=None):
    if done_if and os.path.exists(done_if):
        print(f"[{name}] done already ({done_if})", flush=True)
        return None
    print(f"[{name}] {' '.join(cmd)}", flush=True)
    t0 = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if log:
        open(log, "w").write(r.stdout)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:])
        sys.exit(f"stage {name} failed (exit {r.returncode})")
    print(f"[{name}] {time.time() - t0:.1f} s", flush=True)
    return r.stdout


def consistency(assign_path, labels, K):
    import h5py
    import numpy as np
    with h5py.File(assign_path, "r") as f:
        expert = f["assign/expert"][()]
        n = int(f.attrs["n"])
    counts = np.zeros((K, n), dtype=np.int64)
    np.add.at(counts, (labels, expert), 1)
    per_class = counts.max(1) / np.maximum(counts.sum(1), 1)
    purity = counts.max(0).sum() / counts.sum()
    return {"class_consistency": round(float(per_class.mean()), 4),
            "class_consistency_per_class": [round(float(x), 4) for x in per_class],
            "main_expert_per_class": [int(x) for x in counts.argmax(1)],
            "class_purity": round(float(purity), 4),
            "expert_sizes": [int(x) for x in counts.sum(0)]}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        return peer_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default="/tmp/mode_fmnist")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--fine", type=int, default=128)
    ap.add_argument("--experts", default="4,2")
    ap.add_argument("--batch", type=int, default=64, help="captions per forward pass (both tools)")
    ap.add_argument("--rounds", type=int, default=2, help="throughput: best of this many runs")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--out-json", default=os.path.join(ROOT, "bench", "results", "mode_encoder_clusters.json"))
    args = ap.parse_args()
    if not os.path.exists(os.path.join(MODEL, "model.safetensors")):
        sys.exit(f"skipped: {MODEL} is missing (bash jobs/install_deps.sh --models fetches it)")
    import h5py
    import numpy as np
    bin_ = args.build if os.path.isabs(args.build) else os.path.join(ROOT, args.build)
    bin_ = os.path.join(bin_, "curaclip")
    W = args.work
    data = os.path.join(W, "data")
    os.makedirs(W, exist_ok=True)
    cores = os.cpu_count() or 1
    threads = max(1, cores // args.ranks)
    test = f"{data}/test.h5"
    run("prep", [bin_, "prep", "fashion-mnist", "--out", data], done_if=test, log=f"{W}/prep.log")
    if not os.path.exists(f"{W}/seed/latest"):
        import mode_fashion_mnist as mf
        if not os.path.exists(f"{data}/val.h5"):
            mf.split_holdout(f"{data}/train.h5", f"{data}/fit.h5", f"{data}/val.h5", 5000)
        run("seed", mpirun(args.ranks, threads, bin_, "train", "--config", os.path.join(ROOT, "configs", "tiny.ini"),
                           "--data.train", f"{data}/fit.h5", "--data.eval", "", "--train.log_every", "100",
                           "--train.steps", "2500", "--train.stop_at", "1500", "--train.out", f"{W}/seed"),
            log=f"{W}/seed.log")
    E = f"{W}/enc14"
    os.makedirs(E, exist_ok=True)
    with h5py.File(test, "r") as f:
        labels = f["labels"][()].astype(np.int64)
        classnames = [c.decode() if isinstance(c, bytes) else c for c in f["classnames"][()]]
        caps = [c.decode() if isinstance(c, bytes) else c for c in f["captions"][()]]
    K = len(classnames)
    emb = {"seed": f"{E}/emb_seed.h5", "minilm": f"{E}/emb_minilm.h5"}
    t_embed = {}
    for arm, extra in (("seed", ["--checkpoint", f"{W}/seed"]), ("minilm", ["--encoder", MODEL])):
        t0 = time.time()
        if run(f"embed_{arm}", mpirun(args.ranks, threads, bin_, "embed", *extra, "--data", test, "--out", emb[arm]),
               done_if=emb[arm], log=f"{E}/embed_{arm}.log") is not None:
            t_embed[arm] = round(time.time() - t0, 1)
    ns = [int(x) for x in args.experts.split(",")]
    results = {}
    for arm in ("seed", "minilm"):
        for kind, opts in (("kmeans", []), ("balanced", ["--balanced", "true", "--coarse-balanced", "true"])):
            for n in ns:
                tag = f"{arm}_{kind}_{n}"
                assign = f"{E}/assign_{tag}.h5"
                run(f"cluster_{tag}", mpirun(args.ranks, threads, bin_, "cluster", "--embeddings", emb[arm], "--out",
                                             assign, "--fine", str(args.fine), "--experts", str(n), "--verbose", "0",
                                             *opts), done_if=assign, log=f"{E}/cluster_{tag}.log")
                r = consistency(assign, labels, K)
                # Class-name routes: eval --experts with the seed standing in for every expert.
                ev = f"{E}/routes_{tag}.json"
                run(f"routes_{tag}", mpirun(args.ranks, threads, bin_, "eval", "--experts",
                                            ",".join([f"{W}/seed"] * n), "--assign", assign, "--data", test,
                                            "--json", ev), done_if=ev, log=f"{E}/routes_{tag}.log")
                j = json.load(open(ev))
                routes = {c["class"]: [c["fine"], c["expert"], round(c["d2"], 4)] for c in j["class_routes"]}
                r["class_routes"] = routes
                r["experts_routed_to"] = sorted({v[1] for v in routes.values()})
                r["class_name_routes_to_main_expert"] = round(float(np.mean(
                    [routes[classnames[k]][1] == r["main_expert_per_class"][k] for k in range(K)])), 2)
                results[tag] = r
                print(f"{tag:20s} consistency {r['class_consistency']:.3f}  purity {r['class_purity']:.3f}  "
                      f"sizes {r['expert_sizes']}  class names -> experts {r['experts_routed_to']}", flush=True)

    out = {"name": "mode_encoder_clusters", "date": datetime.date.today().isoformat(),
           "command": " ".join([sys.executable] + sys.argv), "machine": machine(), "git_commit": git_commit(),
           "ranks": args.ranks, "threads_per_rank": threads, "data": "Fashion-MNIST test captions (10000, clean)",
           "fine_clusters": args.fine, "encoder": "all-MiniLM-L6-v2 (mean pooling, L2)",
           "definitions": {
               "class_consistency": "per class, the share of its examples in its most common expert, averaged over classes",
               "class_purity": "per expert, the share of its most common class, weighted by expert size",
               "class_routes": "class name (templates averaged) -> [nearest fine center, its expert, squared distance]",
               "kmeans": "k-means at both levels", "balanced": "balanced k-means at both levels (released MoDE code)"},
           "arms": results, "embed_seconds": t_embed}

    if not args.skip_throughput:
        # The distinct test captions, in first-seen order, as a dataset of their rows.
        first = {}
        for i, c in enumerate(caps):
            first.setdefault(c, i)
        rows = np.array(sorted(first.values()))
        sub = f"{E}/distinct_captions.h5"
        if not os.path.exists(sub):
            with h5py.File(test, "r") as f, h5py.File(sub + ".tmp", "w") as g:
                n = f["labels"].shape[0]
                for k, v in f.attrs.items():
                    g.attrs.create(k, v, dtype=f.attrs.get_id(k).dtype)
                for name, d in f.items():
                    g.create_dataset(name, data=d[()][rows] if d.shape and d.shape[0] == n else d[()], dtype=d.dtype)
            os.replace(sub + ".tmp", sub)
        cap_json = f"{E}/distinct_captions.json"
        json.dump([caps[i] for i in rows], open(cap_json, "w"))
        tput = {"captions": int(len(rows)), "batch": args.batch, "ranks": args.ranks, "threads_total": args.ranks * threads,
                "rounds": args.rounds, "load_average_before": load_average()}
        best = None
        for k in range(args.rounds):
            o = f"{E}/tput_{k}.h5"
            if os.path.exists(o):
                os.remove(o)
            log = run(f"tput_curaclip_{k}", mpirun(args.ranks, threads, bin_, "embed", "--encoder", MODEL, "--data", sub,
                                                   "--out", o, "--batch", str(args.batch)))
            line = [x for x in log.splitlines() if x.startswith("wrote ")][-1]
            sec = float(line.split(";")[1].split(" s embedding")[0])
            best = sec if best is None else min(best, sec)
        peer = run("tput_sentence_transformers", [VENV_PY, os.path.abspath(__file__), "--peer", "--captions", cap_json,
                                                   "--threads", str(args.ranks * threads), "--batch", str(args.batch),
                                                   "--rounds", str(args.rounds)])
        pj = json.loads(peer.strip().splitlines()[-1])
        tput.update({"curaclip_seconds": round(best, 2), "curaclip_captions_per_s": round(len(rows) / best, 1),
                     "sentence_transformers_seconds": round(pj["seconds"], 2),
                     "sentence_transformers_captions_per_s": round(pj["n"] / pj["seconds"], 1),
                     "ratio_curaclip_over_sentence_transformers": round(pj["seconds"] / best, 3),
                     "peer_versions": {"torch": pj["torch"], "sentence_transformers": pj["sentence_transformers"]},
                     "load_average_after": load_average()})
        out["throughput"] = tput
    os.makedirs(os.path.dirname(args.out_json), exist_ok=True)
    json.dump(out, open(args.out_json, "w"), indent=1)

    print("\narm                  consistency  purity  class names -> experts  expert sizes")
    for tag, r in results.items():
        print(f"{tag:20s} {r['class_consistency']:11.3f}  {r['class_purity']:6.3f}  {str(r['experts_routed_to']):22s}  "
              f"{r['expert_sizes']}")
    if "throughput" in out:
        t = out["throughput"]
        print(f"\nthroughput on {t['captions']} distinct captions, {t['ranks']} ranks x {threads} thread(s), batch {t['batch']}:"
              f" curaclip {t['curaclip_captions_per_s']} captions/s, sentence-transformers "
              f"{t['sentence_transformers_captions_per_s']} captions/s, ratio {t['ratio_curaclip_over_sentence_transformers']}x"
              f" (load average {t['load_average_before']} -> {t['load_average_after']} on {cores} cores)")
    print(f"wrote {args.out_json}")


if __name__ == "__main__":
    main()

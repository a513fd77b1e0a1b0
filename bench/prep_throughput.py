#!/usr/bin/python3
"""Dataset preparation throughput: `curaclip prep webdataset` on 1 and 2 MPI ranks vs
the field's Python tools (webdataset + Pillow, bench/prep_peer_webdataset.py) on 1 and
2 worker processes, side by side in one run, repeats interleaved.

The same webdataset shards (256x256 JPEG, quality 90, photo-like content, a caption
each) go to every arm; every arm decodes, resizes the shorter side to S (bicubic,
antialiased), centre-crops and writes the pixels (curaclip: sharded HDF5 plus tokens,
captions and the joined dataset; the peer: numpy files). Times are whole commands,
start-up included. A tokenizer is made once beforehand, so no arm trains one. Every
arm writes to the same file system, tmpfs (/dev/shm) by default, so the figures are
the machine's CPU work and not its disk (this VM's disk throttles writes of the
2.4 GB a 224 px run makes; --work DIR puts them elsewhere).

  /usr/bin/python3 bench/prep_throughput.py --build build [--shards 32 --per-shard 1000 --sizes 64,224 --repeats 3]

Writes bench/results/prep_throughput.json and prints a table. The peers are the
current PyPI releases of webdataset, Pillow and numpy in bench/.venv.
"""
import argparse
import datetime
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_common  # noqa: E402

bench_common.ensure_venv(__file__, ["Pillow", "numpy", "webdataset"])

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import webdataset  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

WORDS = ("a photo of the red blue green small large old new wooden metal dog cat car house tree "
         "street river city beach mountain person child table chair window on in near with").split()


def make_shards(folder, shards, per_shard, side=256, seed=0):
    """Photo-like JPEGs: smooth colour fields, edges, shapes and sensor noise."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for s in range(shards):
        path = os.path.join(folder, f"{s:05d}.tar")
        if os.path.exists(path):
            continue
        with tarfile.open(path + ".tmp", "w", format=tarfile.GNU_FORMAT) as tar:
            for i in range(per_shard):
                base = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((side, side), Image.BICUBIC)
                d = ImageDraw.Draw(base)
                for _ in range(4):
                    x0, y0 = rng.integers(0, side, 2)
                    x1, y1 = x0 + rng.integers(10, side // 2), y0 + rng.integers(10, side // 2)
                    col = tuple(int(v) for v in rng.integers(0, 256, 3))
                    (d.ellipse if rng.random() < 0.5 else d.rectangle)([int(x0), int(y0), int(x1), int(y1)], fill=col)
                arr = np.asarray(base.filter(ImageFilter.GaussianBlur(1.0))).astype(np.int16)
                arr = np.clip(arr + rng.normal(0, 6, arr.shape), 0, 255).astype(np.uint8)
                b = io.BytesIO()
                Image.fromarray(arr).save(b, format="JPEG", quality=90)
                caption = " ".join(rng.choice(WORDS, int(rng.integers(5, 15))))
                for ext, data in (("jpg", b.getvalue()), ("txt", caption.encode())):
                    ti = tarfile.TarInfo(f"{s:05d}{i:04d}.{ext}")
                    ti.size, ti.mtime = len(data), 1700000000
                    tar.addfile(ti, io.BytesIO(data))
        os.rename(path + ".tmp", path)
    return [os.path.join(folder, f"{s:05d}.tar") for s in range(shards)]


def run(cmd, cwd, env=None):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-2000:]}")
    return t


def tree(folder):
    """Every file under folder: relative path -> SHA-256 (read in blocks: outputs are GBs)."""
    import hashlib
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 24), b""):
                    h.update(block)
            out[os.path.relpath(p, folder)] = h.hexdigest()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--shards", type=int, default=32)
    ap.add_argument("--per-shard", type=int, default=1000)
    ap.add_argument("--sizes", default="64,224")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=os.path.join(HERE, ".cache", "prep_throughput"))
    ap.add_argument("--work", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else None,
                    help="where every arm writes its output (default: tmpfs /dev/shm)")
    a = ap.parse_args()
    binary = os.path.abspath(os.path.join(bench_common.ROOT, a.build, "curaclip"))
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found: build first (cmake --build {a.build})")
    sizes = [int(s) for s in a.sizes.split(",")]
    n = a.shards * a.per_shard
    shards = make_shards(os.path.join(a.data, f"{a.shards}x{a.per_shard}"), a.shards, a.per_shard)
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    work = tempfile.mkdtemp(prefix="prep_throughput_", dir=a.work)
    try:
        # One tokenizer for every curaclip run (trained on the captions once).
        run([binary, "prep", "webdataset", shards[0], "--out", "tok", "--image-size", "16", "--quiet"], work, env)
        tok = os.path.join(work, "tok", "tokenizer.bpe")
        peer = [sys.executable, os.path.join(HERE, "prep_peer_webdataset.py")]

        def arms(s):
            cc = [binary, "prep", "webdataset"] + shards + ["--out", "out", "--image-size", str(s), "--tokenizer", tok,
                                                            "--quiet"]
            return {
                "curaclip_1rank": (cc, 1),
                "curaclip_2ranks": (["mpiexec", "-n", "2", "--oversubscribe"] + cc, 2),
                "python_1worker": (peer + ["out", str(s), "1"] + shards, 1),
                "python_2workers": (peer + ["out", str(s), "2"] + shards, 2),
            }

        times = {}
        load = [bench_common.load_average()]
        identical = {}
        for rep in range(a.repeats):
            for s in sizes:
                order = list(arms(s).items())
                if rep % 2:
                    order.reverse()  # interleaved: no arm always runs first or last
                hashes = {}
                for name, (cmd, _) in order:
                    cwd = os.path.join(work, f"{name}_{s}_{rep}")
                    os.makedirs(cwd)
                    times.setdefault((name, s), []).append(run(cmd, cwd, env))
                    if rep == 0 and name.startswith("curaclip"):
                        hashes[name] = tree(os.path.join(cwd, "out"))
                    shutil.rmtree(cwd)  # at once: a 224 px output is GBs on tmpfs, i.e. in memory
                if rep == 0:  # the same bytes from 1 and 2 ranks (the same command line, another folder)
                    identical[s] = hashes["curaclip_1rank"] == hashes["curaclip_2ranks"] and len(hashes["curaclip_1rank"]) > 3
            load.append(bench_common.load_average())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    res = {
        "name": "prep_throughput",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "/usr/bin/python3 bench/prep_throughput.py " + " ".join(sys.argv[1:]),
        "machine": bench_common.machine(),
        "git_commit": bench_common.git_commit(),
        "load_average_1min": load,
        "samples": n,
        "input": f"{a.shards} webdataset shards x {a.per_shard} samples, 256x256 JPEG q90",
        "repeats": a.repeats,
        "output_filesystem": subprocess.run(["stat", "-f", "-c", "%T", a.work or tempfile.gettempdir()],
                                            capture_output=True, text=True).stdout.strip(),
        "versions": {"pillow": PIL.__version__, "webdataset": getattr(webdataset, "__version__", "?"),
                     "numpy": np.__version__, "python": sys.version.split()[0]},
    }
    print(f"prep throughput: {n} samples (256 px JPEG), median of {a.repeats}, samples/s (cores)")
    print(f"{'S':>4}  {'curaclip 1 rank':>16} {'curaclip 2 ranks':>17} {'python 1 worker':>16} {'python 2 workers':>17}"
          f"  {'per core':>9} {'2 cores':>8} {'1->2':>6}  same bytes")
    for s in sizes:
        med = {name: float(np.median(times[(name, s)])) for name, _ in [(k, 0) for k in arms(s)]}
        sps = {name: n / med[name] for name in med}
        for name in sps:
            res[f"samples_per_s_{name}_{s}px"] = round(sps[name], 1)
            res[f"seconds_{name}_{s}px"] = [round(t, 3) for t in times[(name, s)]]
        res[f"throughput_ratio_vs_webdataset_pillow_per_core_{s}px"] = round(sps["curaclip_1rank"] / sps["python_1worker"], 3)
        res[f"throughput_ratio_vs_webdataset_pillow_2cores_{s}px"] = round(sps["curaclip_2ranks"] / sps["python_2workers"], 3)
        res[f"scaling_1_to_2_ranks_{s}px"] = round(sps["curaclip_2ranks"] / sps["curaclip_1rank"], 3)
        res[f"bytes_identical_1_vs_2_ranks_{s}px"] = identical[s]
        print(f"{s:>4}  {sps['curaclip_1rank']:>16.0f} {sps['curaclip_2ranks']:>17.0f} {sps['python_1worker']:>16.0f} "
              f"{sps['python_2workers']:>17.0f}  {res[f'throughput_ratio_vs_webdataset_pillow_per_core_{s}px']:>8.2f}x "
              f"{res[f'throughput_ratio_vs_webdataset_pillow_2cores_{s}px']:>7.2f}x "
              f"{res[f'scaling_1_to_2_ranks_{s}px']:>5.2f}x  {identical[s]}")
    print(f"load average (1 min) before and after each repeat: {load}")
    out = os.path.join(HERE, "results", "prep_throughput.json")
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

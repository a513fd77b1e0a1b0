#!/usr/bin/python3
"""CPU training-step throughput: curaclip against PyTorch, side by side.

For each recipe, runs curaclip's bench_train_step (a child process) and the same
CLIP in PyTorch (this process; open_clip's architecture from
tests/reference/torch_clip.py, fp32, AdamW, the same batch and thread count),
alternating, best of `--rounds` each. Reports examples/s, GFLOP/s, the ratio
curaclip / PyTorch (> 1: curaclip faster) and the fraction of the sgemm rate
measured by curaclip's binary in the same run. Writes bench/results/cpu_train_step.json.

    /usr/bin/python3 bench/cpu_train_step.py --build build
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
from torch_clip import CLIP, clip_loss  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_common import git_commit, machine, write_result  # noqa: E402

# name -> (curaclip preset, batch, timed steps); shapes as src/model/model_config.cpp
RECIPES = {
    "tiny": dict(preset="tiny", batch=256, steps=10,
                 cfg=dict(image_size=28, patch_size=7, channels=1, vision_width=64, vision_layers=2,
                          vision_heads=2, context_length=16, vocab_size=1024, text_width=64, text_layers=2,
                          text_heads=2, mlp_ratio=4, embed_dim=64)),
    "small": dict(preset="small", batch=32, steps=5,
                  cfg=dict(image_size=32, patch_size=4, channels=1, vision_width=256, vision_layers=4,
                           vision_heads=4, context_length=32, vocab_size=4096, text_width=256, text_layers=4,
                           text_heads=4, mlp_ratio=4, embed_dim=256)),
}


def run_curaclip(binary, r, threads):
    out = subprocess.check_output([binary, "--preset", r["preset"], "--batch", str(r["batch"]),
                                   "--steps", str(r["steps"]), "--threads", str(threads)], text=True)
    return json.loads(out.strip().splitlines()[-1])


def run_torch(r, threads, warmup=2):
    torch.set_num_threads(threads)
    c, B = r["cfg"], r["batch"]
    model = CLIP(c, sigmoid=False, mean=[0.286] * c["channels"], std=[0.353] * c["channels"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (B, c["image_size"], c["image_size"], c["channels"]), generator=g,
                           dtype=torch.uint8)
    V, T = c["vocab_size"], c["context_length"]
    tokens = torch.randint(1, V - 2, (B, T), generator=g)
    tokens[:, 0] = V - 2
    tokens[:, T // 2] = V - 1
    tokens[:, T // 2 + 1:] = 0
    times = []
    for s in range(warmup + r["steps"]):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = clip_loss(model.encode_image(images), model.encode_text(tokens), model.logit_scale)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.605170185988092)
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    return {"median_step_s": median, "examples_per_s": B / median}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--recipes", default="tiny,small")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "cpu_train_step.json"))
    a = ap.parse_args()
    binary = os.path.join(a.build, "bench_train_step")
    result = {"name": "cpu_train_step", "date": datetime.date.today().isoformat(),
              "command": "/usr/bin/python3 bench/cpu_train_step.py " + " ".join(sys.argv[1:]),
              "machine": machine(), "git_commit": git_commit(), "threads": a.threads,
              "torch_version": torch.__version__}
    rows = []
    for name in a.recipes.split(","):
        r = RECIPES[name]
        ours, theirs = None, None
        for _ in range(a.rounds):  # alternate so both see the same machine state
            o = run_curaclip(binary, r, a.threads)
            t = run_torch(r, a.threads)
            ours = o if ours is None or o["examples_per_s"] > ours["examples_per_s"] else ours
            theirs = t if theirs is None or t["examples_per_s"] > theirs["examples_per_s"] else theirs
        flops_per_example = ours["gflops"] / ours["examples_per_s"]
        ratio = ours["examples_per_s"] / theirs["examples_per_s"]
        result.update({
            f"batch_{name}": r["batch"],
            f"examples_per_s_{name}": round(ours["examples_per_s"], 3),
            f"pytorch_examples_per_s_{name}": round(theirs["examples_per_s"], 3),
            f"throughput_ratio_vs_pytorch_{name}": round(ratio, 3),
            f"gflops_{name}": round(ours["gflops"], 3),
            f"pytorch_gflops_{name}": round(theirs["examples_per_s"] * flops_per_example, 3),
            f"sgemm_gflops_{name}_run": round(ours["sgemm_gflops"], 3),
            f"fraction_of_sgemm_{name}": round(ours["gflops"] / ours["sgemm_gflops"], 3),
        })
        rows.append((name, r["batch"], ours["examples_per_s"], theirs["examples_per_s"], ratio, ours["gflops"],
                     ours["sgemm_gflops"]))
    print(f"{'recipe':8} {'batch':>5} {'curaclip ex/s':>14} {'pytorch ex/s':>13} {'ratio':>6} {'GFLOP/s':>8} {'sgemm':>7}")
    for n, b, o, t, ratio, gf, sg in rows:
        print(f"{n:8} {b:5d} {o:14.1f} {t:13.1f} {ratio:6.2f} {gf:8.2f} {sg:7.1f}")
    print(f"machine: {result['machine']}, threads {a.threads}, torch {torch.__version__}")
    write_result(a.out, result)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""GPU CLIP training step: curaclip against PyTorch, side by side (issue 5).

For CLIP ViT-B/32 and ViT-B/16 (224 px, context 77) and both losses (softmax CLIP,
sigmoid SigLIP), runs in child processes of this script, alternating, best of
--rounds each:
  * curaclip: bench_train_step --backend cuda (forward + loss + backward + AdamW on the CUDA
    backend: bf16 activations and weights, fp32 master weights, cuDNN fused attention);
    it also measures the bf16 GEMM rate of the GPU (cuBLAS, n = 8192) in the same run;
  * PyTorch eager: the same model (tests/reference/torch_clip.py, open_clip's layout)
    with F.scaled_dot_product_attention, bf16 autocast over fp32 weights, fused AdamW,
    gradient clipping and the logit-scale clamp, like curaclip's step;
  * PyTorch + torch.compile of the forward and loss (where it works; a failure is
    recorded, not fatal).
Both sides upload the uint8 images from host memory every step. Reports pairs/s,
model FLOPs utilisation (curaclip's FLOP count of the model, which is the same model,
over the GEMM rate measured by curaclip's binary in this run), and peak device memory
(device bytes in use at the end of the timed steps minus before the model was built,
cudaMemGetInfo on both sides: caching allocators, workspaces and master weights in,
the CUDA context out). Writes bench/results/gpu_clip_step.json (docs/cuda.md §On a GPU node) and
prints a table. Needs a GPU: without one it says so and exits with status 2.

    python3 bench/gpu_clip_step.py --build build              # on a GPU node
    python3 bench/gpu_clip_step.py --build build --dry-run    # plumbing check on a CPU (tiny model, no file)
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

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
# Shapes as src/model/model_config.cpp's presets.
MODELS = {
    "vit_b32": dict(image_size=224, patch_size=32, channels=3, vision_width=768, vision_layers=12, vision_heads=12,
                    context_length=77, vocab_size=49408, text_width=512, text_layers=12, text_heads=8, mlp_ratio=4,
                    embed_dim=512),
    "vit_b16": dict(image_size=224, patch_size=16, channels=3, vision_width=768, vision_layers=12, vision_heads=12,
                    context_length=77, vocab_size=49408, text_width=512, text_layers=12, text_heads=8, mlp_ratio=4,
                    embed_dim=512),
    "tiny": dict(image_size=28, patch_size=7, channels=1, vision_width=64, vision_layers=2, vision_heads=2,
                 context_length=16, vocab_size=1024, text_width=64, text_layers=2, text_heads=2, mlp_ratio=4,
                 embed_dim=64),
}
LOSSES = ("softmax", "sigmoid")
GOAL_MFU_VIT_B16 = 0.40
GOAL_RATIO_VS_EAGER = 1.2


# ---------------------------------------------------------------- workers (child processes)

def torch_worker(a):
    """One PyTorch measurement; prints one JSON line."""
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
    from torch_clip import CLIP, clip_loss, siglip_loss

    dev = torch.device(a.device)
    c = MODELS[a.model]
    sigmoid = a.loss == "sigmoid"
    gpu = dev.type == "cuda"
    if gpu:
        torch.cuda.init()
        torch.zeros(1, device=dev)  # the context exists before the baseline
        torch.backends.cuda.matmul.allow_tf32 = True
        mem_before = torch.cuda.mem_get_info(dev)[1] - torch.cuda.mem_get_info(dev)[0]
    mean = CLIP_MEAN if c["channels"] == 3 else [0.286]
    std = CLIP_STD if c["channels"] == 3 else [0.353]
    model = CLIP(c, sigmoid=sigmoid, mean=mean, std=std, sdpa=True).to(dev)
    for p in model.parameters():  # torch_clip leaves most weights at zero: give them a scale
        if p.dim() >= 2:
            torch.nn.init.normal_(p, std=0.02)

    class TrainForward(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, images, tokens):
            img, txt = self.m.encode_image(images), self.m.encode_text(tokens)
            if sigmoid:
                return siglip_loss(img, txt, self.m.logit_scale, self.m.logit_bias)
            return clip_loss(img, txt, self.m.logit_scale)

    fwd = TrainForward(model)
    compile_error = None
    if a.compile:
        fwd = torch.compile(fwd)
    kw = {"fused": True} if gpu else {}
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2, **kw)
    except (TypeError, RuntimeError):
        kw = {}
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    g = torch.Generator().manual_seed(0)
    B, V, T = a.batch, c["vocab_size"], c["context_length"]
    images = torch.randint(0, 256, (B, c["image_size"], c["image_size"], c["channels"]), generator=g,
                           dtype=torch.uint8)
    tokens = torch.randint(1, V - 2, (B, T), generator=g)
    tokens[:, 0] = V - 2
    tokens[:, T // 2] = V - 1
    tokens[:, T // 2 + 1:] = 0
    tokens = tokens.to(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=gpu):
            loss = fwd(images.to(dev), tokens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.605170185988092)
        return loss

    def sync():
        if gpu:
            torch.cuda.synchronize(dev)

    try:
        for _ in range(a.warmup):
            step()
        sync()
        times, last = [], None
        for _ in range(a.steps):
            t0 = time.perf_counter()
            last = step()
            sync()
            times.append(time.perf_counter() - t0)
    except Exception as e:  # torch.compile failing on this model/version is a result, not a crash
        if not a.compile:
            raise
        compile_error = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        print(json.dumps({"error": compile_error}))
        return 0
    times.sort()
    median = times[len(times) // 2]
    out = {"median_step_s": median, "pairs_per_s": B / median, "final_loss": float(last.item()),
           "torch_version": torch.__version__, "optimizer": "AdamW" + ("(fused)" if kw else ""),
           "compiled": bool(a.compile)}
    if gpu:
        out["device"] = torch.cuda.get_device_name(dev)
        out["peak_memory_bytes"] = (torch.cuda.mem_get_info(dev)[1] - torch.cuda.mem_get_info(dev)[0]) - mem_before
        out["allocator_peak_allocated_bytes"] = torch.cuda.max_memory_allocated(dev)
        out["allocator_peak_reserved_bytes"] = torch.cuda.max_memory_reserved(dev)
        from torch.backends.cuda import flash_sdp_enabled, mem_efficient_sdp_enabled
        out["sdpa_backends"] = {"flash": flash_sdp_enabled(), "mem_efficient": mem_efficient_sdp_enabled()}
    print(json.dumps(out))
    return 0


def probe_worker(_a):
    """Is there a GPU PyTorch can use? Prints one JSON line; exit 0 either way."""
    try:
        import torch
    except ImportError as e:
        print(json.dumps({"gpu": None, "why": f"PyTorch is not importable: {e}"}))
        return 0
    if not torch.cuda.is_available():
        print(json.dumps({"gpu": None, "why": "torch.cuda.is_available() is False", "torch": torch.__version__}))
        return 0
    print(json.dumps({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "compile": hasattr(torch, "compile")}))
    return 0


# ---------------------------------------------------------------- driver

def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


def run_child(cmd, timeout, what):
    """Runs one measurement; returns its JSON, or {"error": ...} (printed) on failure."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  {what}: timed out after {timeout} s", file=sys.stderr)
        return {"error": f"timed out after {timeout} s"}
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        print(f"  {what}: exit {p.returncode}\n    " + "\n    ".join(tail), file=sys.stderr)
        return {"error": f"exit {p.returncode}: {tail[-1] if tail else ''}"}
    if p.stderr.strip():
        for line in p.stderr.strip().splitlines()[-5:]:
            print(f"  {what} (stderr): {line}", file=sys.stderr)
    try:
        return last_json(p.stdout)
    except ValueError as e:
        return {"error": str(e)}


def better(old, new):
    if old is None or "error" in old:
        return new
    if "error" in new:
        return old
    return new if new["pairs_per_s"] > old["pairs_per_s"] else old


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="build folder with bench_train_step")
    ap.add_argument("--models", default="vit_b32,vit_b16")
    ap.add_argument("--losses", default="softmax,sigmoid")
    ap.add_argument("--batch", type=int, default=256, help="pairs per step (one GPU)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per child run")
    ap.add_argument("--dry-run", action="store_true",
                    help="check the plumbing on a CPU: tiny model, curaclip's CPU backend, PyTorch on the CPU; "
                         "writes no file unless --out is given")
    ap.add_argument("--out", default=None, help="result file (default bench/results/gpu_clip_step.json)")
    ap.add_argument("--worker", choices=["torch", "probe"], help=argparse.SUPPRESS)
    ap.add_argument("--model", default="tiny", help=argparse.SUPPRESS)
    ap.add_argument("--loss", default="softmax", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    ap.add_argument("--compile", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker == "torch":
        return torch_worker(a)
    if a.worker == "probe":
        return probe_worker(a)

    binary = os.path.join(a.build, "bench_train_step")
    if not os.path.exists(binary):
        print(f"gpu_clip_step: {binary} not found (build the project first, --build DIR)", file=sys.stderr)
        return 2
    me = [sys.executable, os.path.abspath(__file__)]
    probe = run_child(me + ["--worker", "probe"], 300, "probe")
    if a.dry_run:
        models, losses, device, compile_modes = ["tiny"], a.losses.split(","), "cpu", [0]
        a.batch, a.steps, a.warmup, a.rounds = min(a.batch, 32), min(a.steps, 3), 1, 1
        print("DRY RUN: tiny model on the CPU; checks the plumbing only, these are not GPU figures")
    else:
        if not probe.get("gpu"):
            print("gpu_clip_step: no usable GPU here (" + probe.get("why", probe.get("error", "?")) + "); "
                  "this benchmark needs one (use --dry-run to check the plumbing on a CPU)", file=sys.stderr)
            return 2
        models, losses, device = a.models.split(","), a.losses.split(","), "cuda"
        compile_modes = [0] if a.no_compile or not probe.get("compile") else [0, 1]
    gpu_name = None if a.dry_run else probe["gpu"]
    result = {"name": "gpu_clip_step", "date": datetime.date.today().isoformat(),
              "command": "python3 bench/gpu_clip_step.py " + " ".join(sys.argv[1:]),
              "machine": machine(gpu=gpu_name), "git_commit": git_commit(), "batch": a.batch,
              "steps": a.steps, "torch_version": probe.get("torch"), "dry_run": a.dry_run}
    rows = []
    gemm_tflops = []
    for m in models:
        for loss in losses:
            ours, eager, compiled = None, None, None
            for _ in range(a.rounds):  # alternate so every side sees the same GPU state
                cmd = [binary, "--preset", m, "--batch", str(a.batch), "--steps", str(a.steps), "--warmup",
                       str(a.warmup), "--loss", loss]
                cmd += ["--backend", "cpu", "--gemm-n", "256"] if a.dry_run else ["--backend", "cuda"]
                ours = better(ours, run_child(cmd, a.timeout, f"curaclip {m} {loss}"))
                for cm in compile_modes:
                    t = run_child(me + ["--worker", "torch", "--model", m, "--loss", loss, "--batch", str(a.batch),
                                        "--steps", str(a.steps), "--warmup", str(a.warmup), "--device", device,
                                        "--compile", str(cm)], a.timeout,
                                  f"pytorch{' compile' if cm else ''} {m} {loss}")
                    if cm:
                        compiled = better(compiled, t)
                    else:
                        eager = better(eager, t)
            key = f"{m}_{loss}"
            ok = "error" not in ours
            if ok and ours.get("gemm_tflops"):
                gemm_tflops.append(ours["gemm_tflops"])
            flops = ours.get("train_flops_per_pair") if ok else None
            gemm = ours.get("gemm_tflops", 0) * 1e12 if ok else 0
            if ok:
                result[f"pairs_per_s_{key}"] = round(ours["pairs_per_s"], 2)
                result[f"mfu_{key}"] = round(ours["mfu"], 4) if ours.get("mfu") is not None else None
                result[f"peak_memory_gib_{key}"] = (round(ours["peak_memory_bytes"] / 2**30, 3)
                                                    if ours.get("peak_memory_bytes") is not None else None)
                result[f"attention_{key}"] = ours.get("attention")
                result[f"train_gflops_per_pair_{m}"] = round(flops / 1e9, 3)
            else:
                result[f"error_{key}"] = ours["error"]
            for name, t in (("pytorch_eager", eager), ("pytorch_compile", compiled)):
                if t is None:
                    continue
                if "error" in t:
                    result[f"{name}_error_{key}"] = t["error"]
                    continue
                result[f"{name}_pairs_per_s_{key}"] = round(t["pairs_per_s"], 2)
                if flops and gemm:
                    result[f"{name}_mfu_{key}"] = round(t["pairs_per_s"] * flops / gemm, 4)
                if t.get("peak_memory_bytes") is not None:
                    result[f"{name}_peak_memory_gib_{key}"] = round(t["peak_memory_bytes"] / 2**30, 3)
                if ok:
                    result[f"throughput_ratio_vs_{name}_{key}"] = round(ours["pairs_per_s"] / t["pairs_per_s"], 3)
                    if ours.get("peak_memory_bytes") and t.get("peak_memory_bytes"):
                        result[f"memory_ratio_vs_{name}_{key}"] = round(
                            t["peak_memory_bytes"] / ours["peak_memory_bytes"], 3)
                if t.get("optimizer"):
                    result["pytorch_optimizer"] = t["optimizer"]
            rows.append((m, loss, ours, eager, compiled))
    if gemm_tflops:
        result["gemm_tflops_bf16_measured"] = round(max(gemm_tflops), 1)
    if not a.dry_run:
        if result.get("mfu_vit_b16_softmax") is not None:
            result["mfu_vit_b16"] = result["mfu_vit_b16_softmax"]
            result[f"goal_mfu_vit_b16_{GOAL_MFU_VIT_B16}_met"] = result["mfu_vit_b16"] >= GOAL_MFU_VIT_B16
        ratios = [v for k, v in result.items() if k.startswith("throughput_ratio_vs_pytorch_eager_vit_b16")]
        if ratios:
            result["throughput_ratio_vs_pytorch_eager"] = min(ratios)
            result[f"goal_ratio_vs_pytorch_eager_{GOAL_RATIO_VS_EAGER}_met"] = min(ratios) >= GOAL_RATIO_VS_EAGER

    def cell(x, text, width):
        return (text(x) if x is not None and "error" not in x else "-").rjust(width)

    print(f"{'model':8} {'loss':8} {'curaclip pairs/s':>16} {'MFU':>6} {'mem GiB':>8} | {'eager pairs/s':>13} "
          f"{'MFU':>6} {'mem GiB':>8} | {'compile pairs/s':>15} | {'x eager':>7} {'x compile':>9}")
    for m, loss, o, e, c in rows:
        ok = "error" not in o
        gm = o.get("gemm_tflops", 0) * 1e12 if ok else 0
        fl = o.get("train_flops_per_pair") if ok else None

        def rate(x):
            return f"{x['pairs_per_s']:.1f}"

        def mfu(x):
            return f"{x['pairs_per_s'] * fl / gm:.3f}" if fl and gm else "-"

        def mem(x):
            return f"{x['peak_memory_bytes'] / 2**30:.2f}" if x.get("peak_memory_bytes") is not None else "-"

        def ratio(x):
            return f"{o['pairs_per_s'] / x['pairs_per_s']:.2f}" if ok else "-"

        print(f"{m:8} {loss:8} {cell(o, rate, 16)} {cell(o, mfu, 6)} {cell(o, mem, 8)} | {cell(e, rate, 13)} "
              f"{cell(e, mfu, 6)} {cell(e, mem, 8)} | {cell(c, rate, 15)} | {cell(e, ratio, 7)} {cell(c, ratio, 9)}")
    print(f"device: {gpu_name or 'CPU (dry run)'}; bf16 GEMM rate measured in this run: "
          f"{result.get('gemm_tflops_bf16_measured', '-')} TFLOP/s; torch {probe.get('torch')}")
    out = a.out or (None if a.dry_run else os.path.join(ROOT, "bench", "results", "gpu_clip_step.json"))
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            json.dump(result, f, indent=2)
        print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

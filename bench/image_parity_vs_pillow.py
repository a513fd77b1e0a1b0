#!/usr/bin/env python3
"""Pixel parity of `curaclip prep`'s image preprocessing (src/prep/image.cpp: TurboJPEG or libvips to
decode, zimg to resize)
with open_clip's (Pillow), and the time per image of each.

open_clip's preprocessing, as torchvision runs it on a PIL image:
  Image.open -> (EXIF transpose, alpha on white: what image.h promises) -> convert("RGB")
  -> Resize(S, BICUBIC, antialias): img.resize((w', h'), BICUBIC) where the shorter side
     becomes S and the longer int(S * long / short)
  -> CenterCrop(S): left = int(round((w' - S) / 2.0)), top likewise.
torchvision is not needed for that: it calls exactly these Pillow functions.

Images: ~50 generated natural-ish ones (smooth colour fields, shapes, noise, blur;
200x150 to 1024x768, portrait and landscape, JPEG quality 90 and PNG, a few grey)
plus the real photos / alpha PNGs found on this machine (matplotlib's sample data,
Rust's embedded-book photos). Each goes through bench/prep_image_tool (built with
the project) and through Pillow; the mean absolute difference in grey levels
(0..255) over all pixels and channels is reported per image and overall, at S = 224
and S = 64.

Timing: CPU time per image on one thread (best of 5 alternating runs) for 256x256 JPEGs -> 224 and
-> 64, Pillow (decode + convert + resize + crop + tobytes) vs prep_image_tool.

Runs itself in bench/.venv (created on first use: the current PyPI Pillow and numpy).

  python3 bench/image_parity_vs_pillow.py [--build build] [--out bench/results/image_parity_vs_pillow.json]
"""
import argparse
import datetime
import glob
import io
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, ".venv")


def ensure_venv():
    """Re-run this script with bench/.venv's Python (made on first use)."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "--upgrade", "Pillow", "numpy"])
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])


ensure_venv()

import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter, ImageOps  # noqa: E402

sys.path.insert(0, HERE)
import bench_common  # noqa: E402

# Real images, where this machine has them (globs; missing ones are skipped).
REAL_IMAGES = [
    "/usr/share/matplotlib/mpl-data/sample_data/*.jpg",
    "/usr/share/matplotlib/mpl-data/sample_data/*.png",
    os.path.expanduser("~/.rustup/toolchains/stable-*/share/doc/rust/html/embedded-book/assets/*.jp*g"),
    "/usr/share/pixmaps/*.png",
]

SIZES = [(200, 150), (150, 200), (256, 256), (320, 240), (240, 320), (333, 250), (500, 375), (375, 500),
         (640, 480), (480, 640), (800, 600), (600, 800), (1024, 768), (768, 1024), (300, 1000), (1000, 300),
         (224, 224), (225, 300), (410, 230), (700, 701)]


def natural_image(rng, w, h):
    """Smooth colour field + shapes + noise (+ a little blur): edges, gradients, texture."""
    small = rng.integers(0, 256, size=(rng.integers(3, 9), rng.integers(3, 9), 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 12))):
        x0, x1 = sorted(rng.integers(-w // 4, w + w // 4, 2).tolist())
        y0, y1 = sorted(rng.integers(-h // 4, h + h // 4, 2).tolist())
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            d.ellipse([x0, y0, x1 + 1, y1 + 1], fill=col)
        elif kind == 1:
            d.rectangle([x0, y0, x1, y1], fill=col)
        else:
            d.line([x0, y0, x1, y1], fill=col, width=int(rng.integers(1, 6)))
    if rng.random() < 0.5:
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
    a = np.asarray(im).astype(np.float32) + rng.normal(0, rng.uniform(2, 12), size=(h, w, 3))
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))


def make_images(folder, n):
    rng = np.random.default_rng(1234)
    files = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        im = natural_image(rng, w, h)
        if i % 12 == 5:
            im = im.convert("L")
        path = os.path.join(folder, f"gen{i:02d}_{w}x{h}." + ("jpg" if i % 2 == 0 else "png"))
        if path.endswith(".jpg"):
            im.save(path, quality=90)
        else:
            im.save(path)
        files.append(path)
    for pattern in REAL_IMAGES:
        for f in sorted(glob.glob(pattern)):
            try:
                with Image.open(f) as im:
                    if min(im.size) >= 32:
                        files.append(f)
            except Exception:
                pass
    return files


def pil_prep(path, S):
    """open_clip's preprocessing with Pillow (see the module docstring)."""
    im = ImageOps.exif_transpose(Image.open(path))
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        bg.alpha_composite(im.convert("RGBA"))
        im = bg
    im = im.convert("RGB")
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(S * long / short)
    size = (S, new_long) if w <= h else (new_long, S)
    im = im.resize(size, Image.BICUBIC)
    left = int(round((size[0] - S) / 2.0))
    top = int(round((size[1] - S) / 2.0))
    return np.asarray(im.crop((left, top, left + S, top + S)))


def vips_prep(tool, files, S, tmp):
    out = os.path.join(tmp, f"out{S}.raw")
    subprocess.check_call([tool, "--size", str(S), "--out", out] + files)
    return np.fromfile(out, dtype=np.uint8).reshape(len(files), S, S, 3)


def cpu_ms_pillow(data, S, repeat):
    t = time.process_time()
    for _ in range(repeat):
        for b in data:
            im = Image.open(io.BytesIO(b)).convert("RGB")
            w, h = im.size
            short, long = (w, h) if w <= h else (h, w)
            size = (S, int(S * long / short)) if w <= h else (int(S * long / short), S)
            im = im.resize(size, Image.BICUBIC)
            left, top = int(round((size[0] - S) / 2.0)), int(round((size[1] - S) / 2.0))
            im.crop((left, top, left + S, top + S)).tobytes()
    return (time.process_time() - t) * 1e3 / (repeat * len(data))


def cpu_ms_tool(tool, files, S, repeat):
    out = subprocess.check_output([tool, "--size", str(S), "--repeat", str(repeat)] + files, text=True)
    return float(out.split()[3])


def best_cpu_ms(tool, files, S, repeat, rounds=5):
    """(curaclip, Pillow) CPU ms per image: the best of `rounds` alternating runs
    (alternating, so that both see the same load on a shared machine)."""
    data = [open(f, "rb").read() for f in files]
    ours, pil = float("inf"), float("inf")
    for _ in range(rounds):
        ours = min(ours, cpu_ms_tool(tool, files, S, repeat))
        pil = min(pil, cpu_ms_pillow(data, S, repeat))
    return ours, pil


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(bench_common.ROOT, "build"), help="build folder holding prep_image_tool")
    ap.add_argument("--n-generated", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=40, help="timing: passes over the 256x256 JPEGs per run")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "image_parity_vs_pillow.json"))
    args = ap.parse_args()
    tool = os.path.join(args.build, "prep_image_tool")
    if not os.path.exists(tool):
        sys.exit(f"{tool} not found: build it (cmake --build {args.build} --target prep_image_tool) or pass --build")

    with tempfile.TemporaryDirectory(prefix="image_parity_") as tmp:
        files = make_images(tmp, args.n_generated)
        rows = {}
        names = {}
        for f in files:
            with Image.open(f) as im:
                names[f] = f"{os.path.basename(f)} ({im.size[0]}x{im.size[1]} {im.mode})"
        for S in (224, 64):
            ours = vips_prep(tool, files, S, tmp)
            for i, f in enumerate(files):
                ref = pil_prep(f, S)
                rows.setdefault(f, {})[S] = float(np.abs(ours[i].astype(np.int16) - ref.astype(np.int16)).mean())
        # Timing: 8 natural 256x256 JPEGs (quality 90).
        rng = np.random.default_rng(7)
        tfiles = []
        for i in range(8):
            p = os.path.join(tmp, f"t{i}.jpg")
            natural_image(rng, 256, 256).save(p, quality=90)
            tfiles.append(p)
        timing = {}
        for S in (224, 64):
            timing[S] = best_cpu_ms(tool, tfiles, S, args.repeat)

    print(f"{'image':<48} {'S=224':>7} {'S=64':>7}")
    for f, r in rows.items():
        print(f"{names[f]:<48} {r[224]:7.3f} {r[64]:7.3f}")
    d224 = [r[224] for r in rows.values()]
    d64 = [r[64] for r in rows.values()]
    print(f"{'mean over ' + str(len(rows)) + ' images':<48} {np.mean(d224):7.3f} {np.mean(d64):7.3f}")
    print(f"{'worst image':<48} {np.max(d224):7.3f} {np.max(d64):7.3f}")
    print("\nCPU ms per 256x256 JPEG, one thread (best of 5 alternating runs):")
    for S in (224, 64):
        v, p = timing[S]
        print(f"  -> {S:3d}: curaclip {v:.3f} ms, Pillow {p:.3f} ms, Pillow/curaclip {p / v:.2f}x")

    vips_version = subprocess.check_output([tool, "--version"], text=True).strip()
    result = {
        "name": "image_parity_vs_pillow",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python3 bench/image_parity_vs_pillow.py " + " ".join(sys.argv[1:]),
        "machine": bench_common.machine(gpu=None),
        "git_commit": bench_common.git_commit(),
        "pillow_version": PIL.__version__,
        "vips_version": vips_version,
        "mean_abs_diff_224": round(float(np.mean(d224)), 4),
        "max_image_mean_abs_diff_224": round(float(np.max(d224)), 4),
        "mean_abs_diff_64": round(float(np.mean(d64)), 4),
        "n_images": len(rows),
        "cpu_ms_per_image_256jpeg_to_224_curaclip": round(timing[224][0], 4),
        "cpu_ms_per_image_256jpeg_to_224_pillow": round(timing[224][1], 4),
        "cpu_ms_per_image_256jpeg_to_64_curaclip": round(timing[64][0], 4),
        "cpu_ms_per_image_256jpeg_to_64_pillow": round(timing[64][1], 4),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes a small image-text corpus in the layouts users bring (for the CLI tests):

  OUT/wds/{00000..N-1}.tar   webdataset shards as img2dataset writes them: key.jpg,
                             key.txt, key.json per sample, plus 0000k.parquet and
                             0000k_stats.json beside each tar
  OUT/csv/index.csv          open_clip's CSV (filepath,title) over OUT/csv/images/
  OUT/eval/<class>/*.png     an ImageNet-style evaluation folder

Each image is a coloured shape on a background; its caption names the colour, the
shape and the background, and its class is the shape's colour. With --bad, the
first shard also holds a truncated JPEG and a sample without a caption.

  usage: make_image_text_data.py OUT [--train 320] [--shards 4] [--eval 20] [--bad]
"""
import argparse
import io
import json
import os
import tarfile

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 210, 20)}
BACKS = {"white": (245, 245, 245), "black": (15, 15, 15), "gray": (128, 128, 128)}
SHAPES = ["square", "circle", "triangle"]


def picture(rng):
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    back = list(BACKS)[rng.integers(len(BACKS))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    w, h = int(rng.integers(40, 96)), int(rng.integers(40, 96))
    img = Image.new("RGB", (w, h), BACKS[back])
    d = ImageDraw.Draw(img)
    s = min(w, h)
    x0, y0 = (w - s) // 2 + s // 6, (h - s) // 2 + s // 6
    x1, y1 = x0 + 2 * s // 3, y0 + 2 * s // 3
    if shape == "square":
        d.rectangle([x0, y0, x1, y1], fill=COLOURS[colour])
    elif shape == "circle":
        d.ellipse([x0, y0, x1, y1], fill=COLOURS[colour])
    else:
        d.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=COLOURS[colour])
    arr = np.asarray(img).astype(np.int16) + rng.integers(-12, 13, (h, w, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img, colour, f"a {colour} {shape} on a {back} background"


def encoded(img, fmt):
    b = io.BytesIO()
    img.save(b, format=fmt, quality=90) if fmt == "JPEG" else img.save(b, format=fmt)
    return b.getvalue()


def add(tar, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = 1700000000
    tar.addfile(ti, io.BytesIO(data))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=320)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--eval", type=int, default=20, help="images per class in the evaluation folder")
    ap.add_argument("--bad", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    os.makedirs(f"{a.out}/wds", exist_ok=True)
    os.makedirs(f"{a.out}/csv/images", exist_ok=True)
    per = (a.train + a.shards - 1) // a.shards
    rows = []
    for s in range(a.shards):
        with tarfile.open(f"{a.out}/wds/{s:05d}.tar", "w", format=tarfile.GNU_FORMAT) as tar:
            for i in range(s * per, min(a.train, (s + 1) * per)):
                img, colour, caption = picture(rng)
                key = f"{s:05d}{i % per:04d}"
                jpg = encoded(img, "JPEG")
                add(tar, f"{key}.jpg", jpg)
                add(tar, f"{key}.txt", caption.encode())
                add(tar, f"{key}.json", json.dumps({"caption": caption, "url": f"http://example.com/{key}.jpg",
                                                    "key": key, "status": "success"}).encode())
                img.save(f"{a.out}/csv/images/{key}.png")
                rows.append((f"images/{key}.png", caption))
            if a.bad and s == 0:
                img, _, caption = picture(rng)
                jpg = encoded(img, "JPEG")
                add(tar, "bad00001.jpg", jpg[: len(jpg) // 2])
                add(tar, "bad00001.txt", caption.encode())
                add(tar, "bad00002.jpg", jpg)
        with open(f"{a.out}/wds/{s:05d}.parquet", "wb") as f:
            f.write(b"PAR1")
        with open(f"{a.out}/wds/{s:05d}_stats.json", "w") as f:
            json.dump({"count": per, "successes": per}, f)
    import csv
    with open(f"{a.out}/csv/index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filepath", "title"])
        w.writerows(rows)
    for colour in COLOURS:
        os.makedirs(f"{a.out}/eval/{colour}", exist_ok=True)
    n = 0
    while min(len(os.listdir(f"{a.out}/eval/{c}")) for c in COLOURS) < a.eval:
        img, colour, _ = picture(rng)
        if len(os.listdir(f"{a.out}/eval/{colour}")) < a.eval:
            img.save(f"{a.out}/eval/{colour}/{n:04d}.png")
            n += 1


if __name__ == "__main__":
    main()

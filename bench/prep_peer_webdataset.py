"""The Python peer of bench/prep_throughput.py: what a user does with the field's
tools to prepare webdataset shards for training, doing the same work as
`curaclip prep webdataset`: read the tars with the webdataset library, decode with
Pillow, resize the shorter side to S (bicubic, antialiased: open_clip's Resize),
centre crop (open_clip's CenterCrop), and write the pixels to numpy files, with
`workers` processes, each taking whole shards.

  python prep_peer_webdataset.py OUT S WORKERS SHARD...   (run by prep_throughput.py in bench/.venv)
"""
import multiprocessing as mp
import os
import sys

import numpy as np
import webdataset as wds
from PIL import Image


def preprocess(img, s):
    img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        nw, nh = s, int(s * h / w)
    else:
        nw, nh = int(s * w / h), s
    img = img.resize((nw, nh), Image.BICUBIC)
    left, top = int(round((nw - s) / 2.0)), int(round((nh - s) / 2.0))
    return np.asarray(img.crop((left, top, left + s, top + s)))


def convert(job):
    out, s, shard = job
    pixels, captions = [], []
    for key, img, caption in wds.WebDataset(shard, shardshuffle=False, empty_check=False).decode("pil").to_tuple(
            "__key__", "jpg;png;webp", "txt"):
        pixels.append(preprocess(img, s))
        captions.append(caption)
    base = os.path.join(out, os.path.basename(shard))
    np.save(base + ".npy", np.stack(pixels))
    with open(base + ".txt", "w") as f:
        f.write("\n".join(captions))
    return len(pixels)


def main():
    out, s, workers, shards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    os.makedirs(out, exist_ok=True)
    jobs = [(out, s, shard) for shard in shards]
    if workers == 1:
        n = sum(map(convert, jobs))
    else:
        with mp.Pool(workers) as pool:
            n = sum(pool.map(convert, jobs, chunksize=1))
    print(n)


if __name__ == "__main__":
    main()

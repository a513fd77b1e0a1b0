#!/usr/bin/env python3
"""curaclip <-> open_clip round trips (issue 13, docs/interop.md), with the real open_clip
from PyPI in bench/.venv (a bench tool, never a build dependency):

  trained tiny model   curaclip prep (a generated RGB image-text corpus) -> train tiny_rgb
                       -> curaclip export -> open_clip.create_model("local-dir:...") loads it
                       (strict) -> open_clip's embeddings of the test set vs curaclip embed's;
                       open_clip's zero-shot (its SimpleTokenizer reading OUR tokenizer.bpe,
                       gzipped) vs curaclip eval's; open_clip's state_dict saved again ->
                       curaclip convert -> curaclip eval gives the same figures.
  ViT-B/32 random init open_clip.create_model("ViT-B-32") (fp32, random) -> safetensors ->
                       curaclip convert --model vit_b32 -> curaclip export -> open_clip loads
                       it: every tensor bitwise equal; curaclip's embeddings (eval set at
                       224 px, OpenAI's tokenizer) vs open_clip's; eval figures of the
                       imported and the re-imported model equal.

Goals: max |d| <= 1e-5 on embeddings (fp32), identical zero-shot and retrieval figures.
Writes bench/results/open_clip_interop.json.

    bench/.venv/bin/python bench/open_clip_interop.py [--bin build/curaclip] [--work DIR]
"""
import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import ROOT, ensure_venv, git_commit, machine  # noqa: E402

ensure_venv(__file__, ["torch", "open-clip-torch", "safetensors"])

import numpy as np  # noqa: E402
import open_clip  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

SYS_PY = "/usr/bin/python3"  # Debian's, with h5py (python3-h5py), to read curaclip's HDF5 files


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    t = time.time()
    subprocess.run(cmd, check=True, **kw)
    return time.time() - t


def h5_arrays(path, names):
    """Datasets of an HDF5 file as numpy arrays (through Debian's python3 + h5py)."""
    out = tempfile.mktemp(suffix=".npz")
    code = ("import h5py, numpy as np, sys\n"
            "f = h5py.File(sys.argv[1], 'r')\n"
            "d = {}\n"
            "for n in sys.argv[3:]:\n"
            "    if n in f:\n"
            "        v = f[n][()]\n"
            "        d[n.strip('/').replace('/', '.')] = np.array([x.decode() if isinstance(x, bytes) else x for x in v]) "
            "if v.dtype.kind in 'OS' else v\n"
            "np.savez(sys.argv[2], **d)\n")
    subprocess.run([SYS_PY, "-c", code, path, out] + names, check=True)
    d = dict(np.load(out, allow_pickle=False))
    os.unlink(out)
    return d


def open_clip_embed(model, images_u8, tokens, mean, std):
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)) / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    with torch.no_grad():
        img = torch.cat([model.encode_image(x[i:i + 32], normalize=True) for i in range(0, len(x), 32)])
        txt = torch.cat([model.encode_text(torch.from_numpy(tokens[i:i + 32]).long(), normalize=True)
                         for i in range(0, len(tokens), 32)])
    return img.numpy(), txt.numpy()


def max_abs(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def eval_json(bin_, ckpt, data, templates, out):
    run([bin_, "eval", "--checkpoint", ckpt, "--data", data, "--templates", templates, "--json", out, "--batch", "16"])
    with open(out) as f:
        return json.load(f)


def figures(r):
    return {k: r[k] for k in sorted(r) if k.startswith(("zeroshot_top", "zeroshot_mean", "i2t_", "t2i_"))}


def zero_shot_top1(model, img_emb, labels, classnames, templates, tokenizer, ctx):
    with torch.no_grad():
        cls = []
        for c in classnames:
            t = tokenizer([tp.replace("{}", str(c)) for tp in templates], context_length=ctx)
            e = model.encode_text(t, normalize=True).mean(0)
            cls.append(e / e.norm())
        cls = torch.stack(cls).numpy()
    pred = (img_emb @ cls.T).argmax(1)
    return float((pred == labels).mean())


def same_state_dict(a, b):
    """Keys equal and every tensor bitwise equal (shape, dtype, bytes)."""
    if sorted(a) != sorted(b):
        return False
    return all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def fresh(*paths):
    """Outputs of an earlier run in the same --work folder go (curaclip never overwrites them)."""
    for p in paths:
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.unlink(p)


def tiny_trained(bin_, w):
    prep = ["--image-size", "32", "--context", "32"]
    if not os.path.exists(f"{w}/d/test.h5"):  # (a rerun in the same --work folder keeps the data)
        run([SYS_PY, os.path.join(ROOT, "tests/cli/make_image_text_data.py"), f"{w}/in", "--train", "640", "--eval", "20"])
        run([bin_, "prep", "webdataset", f"{w}/in/wds/{{00000..00003}}.tar", "--out", f"{w}/d", "--vocab", "1024"] + prep)
        run([bin_, "prep", "folder", f"{w}/in/eval", "--out", f"{w}/d", "--name", "test",
             "--caption-template", "a photo of a {} shape."] + prep)
    fresh(f"{w}/run", f"{w}/emb.h5", f"{w}/back.h5", f"{w}/b32.h5", f"{w}/b32back.h5", f"{w}/b32emb.h5", f"{w}/d224")
    train_s = run([bin_, "train", "--config", os.path.join(ROOT, "configs/tiny_rgb.ini"), "--data.train", f"{w}/d/data.h5",
                   "--data.eval", f"{w}/d/test.h5", "--model.vocab_size", "1024", "--train.steps", "120",
                   "--train.batch_size", "64", "--train.warmup", "10", "--train.log_every", "40",
                   "--train.eval_every", "1000", "--train.out", f"{w}/run"])
    templates = ["a photo of a {} shape.", "a {} thing."]
    with open(f"{w}/t.txt", "w") as f:
        f.write("\n".join(templates) + "\n")

    # export -> open_clip
    run([bin_, "export", f"{w}/run", "--format", "open_clip", "--out", f"{w}/oc/open_clip_model.safetensors"])
    model = open_clip.create_model(f"local-dir:{w}/oc").eval()  # load_checkpoint(strict=True) inside
    with open(f"{w}/oc/open_clip_config.json") as f:
        pre = json.load(f)["preprocess_cfg"]
    loaded_equal = same_state_dict({k: v for k, v in model.state_dict().items() if k != "attn_mask"},
                                   load_file(f"{w}/oc/open_clip_model.safetensors"))

    # embeddings: open_clip vs curaclip embed, on the test set
    run([bin_, "embed", "--checkpoint", f"{w}/run", "--data", f"{w}/d/test.h5", "--what", "both",
         "--out", f"{w}/emb.h5"])
    d = h5_arrays(f"{w}/d/test.h5", ["images", "tokens", "labels", "classnames"])
    e = h5_arrays(f"{w}/emb.h5", ["image_emb", "caption_emb"])
    oi, ot = open_clip_embed(model, d["images"], d["tokens"], pre["mean"], pre["std"])
    # open_clip's zero-shot with its own SimpleTokenizer reading our merges file (gzipped)
    with open(f"{w}/d/tokenizer.bpe", "rb") as f:
        gz = gzip.compress(f.read())
    with open(f"{w}/tokenizer.bpe.gz", "wb") as f:
        f.write(gz)
    tok = open_clip.tokenizer.SimpleTokenizer(bpe_path=f"{w}/tokenizer.bpe.gz", context_length=32)
    oc_top1 = zero_shot_top1(model, oi, d["labels"], list(d["classnames"]), templates, tok, 32)
    cc = eval_json(bin_, f"{w}/run", f"{w}/d/test.h5", f"{w}/t.txt", f"{w}/eval_run.json")

    # open_clip -> curaclip: its state_dict saved as open_clip saves it, imported again
    os.makedirs(f"{w}/back", exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if k != "attn_mask"},
              f"{w}/back/open_clip_model.safetensors")
    shutil.copy(f"{w}/oc/open_clip_config.json", f"{w}/back/open_clip_config.json")
    run([bin_, "convert", "--from", "open_clip", f"{w}/back/open_clip_model.safetensors", "--out", f"{w}/back.h5"])
    back = eval_json(bin_, f"{w}/back.h5", f"{w}/d/test.h5", f"{w}/t.txt", f"{w}/eval_back.json")
    # and the tokenizer: SimpleTokenizer on our merges gives the dataset's token rows
    caps = h5_arrays(f"{w}/d/test.h5", ["captions"])["captions"]
    tok_equal = bool(np.array_equal(tok(list(caps), context_length=32).numpy(), d["tokens"]))
    return {
        "model": "configs/tiny_rgb.ini (32 px RGB, width 64, 2+2 layers, vocab 1024), trained 120 steps",
        "train_seconds": round(train_s, 1),
        "test_rows": int(len(d["images"])),
        "open_clip_loaded_tensors_bitwise_equal": loaded_equal,
        "max_abs_diff_image_embeddings": max_abs(oi, e["image_emb"]),
        "max_abs_diff_text_embeddings": max_abs(ot, e["caption_emb"]),
        "zeroshot_top1_curaclip": cc["zeroshot_top1"],
        "zeroshot_top1_open_clip": oc_top1,
        "figures_curaclip_run": figures(cc),
        "figures_after_round_trip": figures(back),
        "figures_identical": figures(cc) == figures(back),
        "open_clip_tokenizer_on_our_merges_gives_dataset_tokens": tok_equal,
    }


def vit_b32(bin_, w):
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32").eval()  # random init, fp32
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if k != "attn_mask"}
    save_file(sd, f"{w}/b32.safetensors")
    convert_s = run([bin_, "convert", "--from", "open_clip", f"{w}/b32.safetensors", "--model", "vit_b32",
                     "--out", f"{w}/b32.h5"])
    export_s = run([bin_, "export", f"{w}/b32.h5", "--format", "open_clip", "--out", f"{w}/b32oc/open_clip_model.safetensors"])
    again = open_clip.create_model(f"local-dir:{w}/b32oc").eval()
    bitwise = same_state_dict({k: v for k, v in again.state_dict().items() if k != "attn_mask"}, sd)
    # an evaluation set at 224 px with OpenAI's tokenizer
    bpe = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    run([bin_, "prep", "folder", f"{w}/in/eval", "--out", f"{w}/d224", "--name", "test", "--image-size", "224",
         "--context", "77", "--tokenizer", bpe, "--caption-template", "a photo of a {} shape."])
    run([bin_, "embed", "--checkpoint", f"{w}/b32.h5", "--data", f"{w}/d224/test.h5", "--what", "both",
         "--out", f"{w}/b32emb.h5", "--batch", "16"])  # (ViT-B/32 activations of 256 rows: 18 GB)
    d = h5_arrays(f"{w}/d224/test.h5", ["images", "tokens", "captions"])
    e = h5_arrays(f"{w}/b32emb.h5", ["image_emb", "caption_emb"])
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    oi, ot = open_clip_embed(model, d["images"], d["tokens"], mean, std)
    tok_equal = bool(np.array_equal(open_clip.get_tokenizer("ViT-B-32")(list(d["captions"])).numpy(), d["tokens"]))
    a = eval_json(bin_, f"{w}/b32.h5", f"{w}/d224/test.h5", f"{w}/t.txt", f"{w}/eval_b32.json")
    # the exported file imported again (no --model: its metadata describes it)
    run([bin_, "convert", "--from", "open_clip", f"{w}/b32oc/open_clip_model.safetensors", "--out", f"{w}/b32back.h5"])
    b = eval_json(bin_, f"{w}/b32back.h5", f"{w}/d224/test.h5", f"{w}/t.txt", f"{w}/eval_b32back.json")
    return {
        "model": "open_clip ViT-B-32, random init, fp32 (151M parameters)",
        "convert_seconds": round(convert_s, 1),
        "export_seconds": round(export_s, 1),
        "open_clip_reloaded_tensors_bitwise_equal": bitwise,
        "test_rows": int(len(d["images"])),
        "max_abs_diff_image_embeddings": max_abs(oi, e["image_emb"]),
        "max_abs_diff_text_embeddings": max_abs(ot, e["caption_emb"]),
        "open_clip_tokenizer_gives_dataset_tokens": tok_equal,
        "figures_imported": figures(a),
        "figures_after_round_trip": figures(b),
        "figures_identical": figures(a) == figures(b),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "curaclip"))
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "open_clip_interop.json"))
    args = ap.parse_args()
    bin_ = os.path.abspath(args.bin)
    w = args.work or tempfile.mkdtemp(prefix="oc_interop_")
    os.makedirs(w, exist_ok=True)
    try:
        tiny = tiny_trained(bin_, w)
        b32 = vit_b32(bin_, w)
    finally:
        if not args.work:
            shutil.rmtree(w, ignore_errors=True)
    worst = max(tiny["max_abs_diff_image_embeddings"], tiny["max_abs_diff_text_embeddings"],
                b32["max_abs_diff_image_embeddings"], b32["max_abs_diff_text_embeddings"])
    result = {
        "benchmark": "open_clip_interop",
        "command": "bench/.venv/bin/python bench/open_clip_interop.py",
        "commit": git_commit(),
        "machine": machine(),
        "open_clip": open_clip.__version__,
        "torch": torch.__version__,
        "goals": {"max_abs_diff_embeddings": 1e-5, "figures_identical": True},
        "tiny_trained": tiny,
        "vit_b32_random": b32,
        "max_abs_diff_embeddings": worst,
        "goals_met": bool(worst <= 1e-5 and tiny["figures_identical"] and b32["figures_identical"]
                          and tiny["zeroshot_top1_curaclip"] == tiny["zeroshot_top1_open_clip"]),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

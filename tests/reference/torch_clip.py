"""open_clip's CLIP architecture in plain PyTorch (torch >= 1.13), shared by the
parity reference generator (tests/reference/make_torch_reference.py) and the
benchmark peers (bench/cpu_train_step.py, bench/gpu_clip_step.py). Module names
reproduce open_clip's state_dict keys, which are curaclip's parameter names.
Tensors it makes follow the input's device, so the model runs on a GPU as well.
sdpa=True computes attention with F.scaled_dot_product_attention (torch >= 2.0;
the same math spelled out on older torch) instead of nn.MultiheadAttention, with
the same parameters and names.
"""
import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F


class SdpaAttention(nn.Module):
    """nn.MultiheadAttention's parameters (same state_dict keys), computed with
    F.scaled_dot_product_attention: the fused kernels PyTorch picks on a GPU."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x, causal):
        B, T, C = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(B, T, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        if hasattr(F, "scaled_dot_product_attention"):
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        else:  # torch 1.x (CPU plumbing checks): the same math
            s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
            if causal:
                s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
            o = s.softmax(-1) @ v
        return self.out_proj(o.transpose(1, 2).reshape(B, T, C))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads, mlp_ratio, sdpa=False):
        super().__init__()
        self.sdpa = sdpa
        self.ln_1 = nn.LayerNorm(width)
        self.attn = SdpaAttention(width, heads) if sdpa else nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * mlp_ratio)),
            ("gelu", nn.GELU()),
            ("c_proj", nn.Linear(width * mlp_ratio, width)),
        ]))

    def forward(self, x, attn_mask=None):
        y = self.ln_1(x)
        if self.sdpa:  # the only mask this model uses is the causal one
            x = x + self.attn(y, causal=attn_mask is not None)
        else:
            x = x + self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, mlp_ratio, sdpa=False):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, mlp_ratio, sdpa) for _ in range(layers)])

    def forward(self, x, attn_mask=None):
        for r in self.resblocks:
            x = r(x, attn_mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, c, sdpa=False):
        super().__init__()
        w, p = c["vision_width"], c["patch_size"]
        grid = c["image_size"] // p
        self.conv1 = nn.Conv2d(c["channels"], w, kernel_size=p, stride=p, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, c["vision_layers"], c["vision_heads"], c["mlp_ratio"], sdpa)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.zeros(w, c["embed_dim"]))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype,
                                                             device=x.device)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0, :]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, c, sigmoid, mean, std, sdpa=False):
        super().__init__()
        self.mean, self.std = list(mean), list(std)
        self.visual = VisionTransformer(c, sdpa)
        self.transformer = Transformer(c["text_width"], c["text_layers"], c["text_heads"], c["mlp_ratio"], sdpa)
        self.token_embedding = nn.Embedding(c["vocab_size"], c["text_width"])
        self.positional_embedding = nn.Parameter(torch.zeros(c["context_length"], c["text_width"]))
        self.ln_final = nn.LayerNorm(c["text_width"])
        self.text_projection = nn.Parameter(torch.zeros(c["text_width"], c["embed_dim"]))
        self.logit_scale = nn.Parameter(torch.ones([]) * (math.log(10) if sigmoid else math.log(1 / 0.07)))
        if sigmoid:
            self.logit_bias = nn.Parameter(torch.ones([]) * -10.0)
        ctx = c["context_length"]
        self.register_buffer("attn_mask", torch.full((ctx, ctx), float("-inf")).triu_(1), persistent=False)

    def encode_image(self, images_u8):
        x = images_u8.to(self.proj_dtype()) / 255.0
        x = x.permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return F.normalize(self.visual((x - mean) / std), dim=-1)

    def encode_text(self, tokens):
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.transformer(x, attn_mask=self.attn_mask.to(x.dtype))
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)] @ self.text_projection
        return F.normalize(x, dim=-1)

    def proj_dtype(self):
        return self.text_projection.dtype


def clip_loss(img, txt, logit_scale):
    logits = logit_scale.exp() * img @ txt.T
    labels = torch.arange(img.shape[0], device=img.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def siglip_loss(img, txt, logit_scale, logit_bias):
    logits = logit_scale.exp() * img @ txt.T + logit_bias
    labels = 2 * torch.eye(img.shape[0], dtype=logits.dtype, device=logits.device) - 1
    return -F.logsigmoid(labels * logits).sum() / img.shape[0]

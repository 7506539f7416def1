"""Attention entropy computed the slow, obvious way: the reference the tests hold the kernel to.

Shared by the entropy tests and the twin tests, so every architecture is checked against the
same definition.
"""

import io
import math
import random

import torch
from PIL import Image

from mirsafety.data.sample import draw_scene
from mirsafety.entropy.capture import RowEntropies

TOL = 1e-4
SHARPEN = 4.0


def pictures(count, size=(64, 64), seed=0):
    rng = random.Random(seed)
    return [Image.open(io.BytesIO(draw_scene(f"thing{k}", k + 1, count, size, rng))).convert("RGB")
            for k in range(count)]


def sharpen(model, factor=SHARPEN):
    """Scale the language model's q and k projections: sharper, more varied attention rows."""
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "layer_idx", None) is not None and hasattr(module, "q_proj"):
                for proj in (module.q_proj, module.k_proj):
                    proj.weight.mul_(factor)
                    if proj.bias is not None:
                        proj.bias.mul_(factor)
    return model


def reference_row(p, allowed, image):
    """Head-mean (H, H_img, H_norm, H_img_norm, n, n_img) of rows p (H, K) over allowed keys."""
    p = p.double()
    n = int(allowed.sum())
    h = -torch.special.xlogy(p * allowed, p).sum(-1)
    keys = allowed & image
    n_img = int(keys.sum())
    q = p * keys
    q = q / q.sum(-1, keepdim=True)
    h_img = -torch.special.xlogy(q, q).sum(-1) if n_img else torch.full_like(h, math.nan)
    norm = h / math.log(n) if n > 1 else torch.zeros_like(h)
    norm_img = (h_img / math.log(n_img) if n_img > 1 else torch.zeros_like(h)) if n_img \
        else torch.full_like(h, math.nan)
    return {"entropy_all": h.mean(), "entropy_img": h_img.mean(),
            "entropy_all_norm": norm.mean(), "entropy_img_norm": norm_img.mean()}, n, n_img


def image_blocks(token_type_ids):
    """Per batch row, the id of the contiguous image run each position is in (-1 for text)."""
    blocks = torch.full_like(token_type_ids, -1)
    for b in range(token_type_ids.shape[0]):
        run, previous = -1, 0
        for pos, kind in enumerate(token_type_ids[b].tolist()):
            if kind == 1 and previous != 1:
                run += 1
            if kind == 1:
                blocks[b, pos] = run
            previous = kind
    return blocks


def assert_rows_match(found: RowEntropies, attentions, attention_mask, image, layers,
                      blocks=None):
    """Every selected row of ``found`` equals the eager attention's, at valid positions only.

    ``blocks`` (``image_blocks``) marks images whose tokens see each other both ways (Gemma-3's
    mask): an image token's row may then attend to later tokens of its own image."""
    checked = 0
    for b in range(found.selected.shape[0]):
        for r, pos in enumerate(found.positions.tolist()):
            if not found.selected[b, r]:
                continue
            assert attention_mask[b, pos] == 1
            allowed = (torch.arange(attention_mask.shape[1]) <= pos) & attention_mask[b].bool()
            if blocks is not None and blocks[b, pos] >= 0:
                allowed |= blocks[b] == blocks[b, pos]
            for li, layer in enumerate(layers):
                p = attentions[layer][b, :, pos, :]
                assert float(p[:, ~allowed].abs().sum()) < 1e-6  # eager agrees on masks
                want, n, n_img = reference_row(p, allowed, image[b])
                assert int(found.n_keys[b, r]) == n and int(found.n_image_keys[b, r]) == n_img
                for name, value in want.items():
                    got = float(found.values[name][b, r, li])
                    if math.isnan(float(value)):
                        assert math.isnan(got), (name, b, pos, layer)
                    else:
                        assert abs(got - float(value)) < TOL, (name, b, pos, layer, got, value)
            checked += 1
    return checked

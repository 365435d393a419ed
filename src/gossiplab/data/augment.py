"""Per-batch augmentation in torch: pad-4 random crop and horizontal flip (the CIFAR standard).

Randomness is drawn separately (:func:`sample_crop_flip`) from its application
(:func:`apply_crop_flip`), so stability twins can replay exactly the same augmentation.
"""

from __future__ import annotations

import torch


def sample_crop_flip(n: int, pad: int, generator: torch.Generator) -> torch.Tensor:
    """[n, 3] int64: (dy, dx, flip) per image, dy/dx in [0, 2*pad], flip in {0, 1}."""
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flip = torch.randint(0, 2, (n, 1), generator=generator)
    return torch.cat([offsets, flip], dim=1)


def apply_crop_flip(x: torch.Tensor, params: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Crop each zero-padded image of ``x`` [B, C, H, W] at its offsets, flip where asked.

    One ``gather`` from the unpadded images, then zeros where the crop window leaves the image:
    no padded copy, and ~15x faster than 4-D advanced indexing on CPU.
    """
    b, c, h, w = x.shape
    params = params.to(x.device)
    rows = params[:, 0:1] - pad + torch.arange(h, device=x.device)  # [B, H], rows of x
    cols = params[:, 1:2] - pad + torch.arange(w, device=x.device)  # [B, W]
    flip = params[:, 2].bool()
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    flat = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]  # [B, H, W]
    out = torch.gather(x.reshape(b, c, h * w), 2, flat.view(b, 1, h * w).expand(b, c, h * w))
    return out.view(b, c, h, w).masked_fill_(~inside[:, None], 0)

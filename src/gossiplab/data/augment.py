"""Per-batch augmentation in torch: pad-4 random crop and horizontal flip (the CIFAR standard).

Randomness is drawn separately (:func:`sample_crop_flip`) from its application
(:func:`apply_crop_flip`), so stability twins can replay exactly the same augmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_crop_flip(n: int, pad: int, generator: torch.Generator) -> torch.Tensor:
    """[n, 3] int64: (dy, dx, flip) per image, dy/dx in [0, 2*pad], flip in {0, 1}."""
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flip = torch.randint(0, 2, (n, 1), generator=generator)
    return torch.cat([offsets, flip], dim=1)


def apply_crop_flip(x: torch.Tensor, params: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Crop each zero-padded image of ``x`` [B, C, H, W] at its offsets, flip where asked."""
    b, c, h, w = x.shape
    params = params.to(x.device)
    xp = F.pad(x, (pad, pad, pad, pad))
    rows = params[:, 0:1] + torch.arange(h, device=x.device)  # [B, H]
    cols = params[:, 1:2] + torch.arange(w, device=x.device)  # [B, W]
    flip = params[:, 2].bool()
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]

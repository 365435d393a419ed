"""Checkpoints: written atomically (temp file, fsync, rename), read with ``weights_only=True`` so a
checkpoint file can never execute code. States hold only tensors, numbers, strings, lists, dicts."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from gossiplab.errors import UserError
from gossiplab.fileio import atomic_write

FORMAT = "gossiplab-checkpoint-1"


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Atomically write ``state``; a crash mid-write leaves the previous checkpoint intact."""
    payload = {"format": FORMAT, **state}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged file raises many types (zip, pickle, struct...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"checkpoint {path} is corrupted or not a gossiplab checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"checkpoint {path} is not a gossiplab checkpoint")
    return state

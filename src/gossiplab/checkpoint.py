"""Checkpoints: written atomically (temp file, fsync, rename), read with ``weights_only=True`` so a
checkpoint file can never execute code. States hold only tensors, numbers, strings, lists, dicts."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from gossiplab.errors import UserError
from gossiplab.fileio import atomic_write, memory_bytes, read_bytes

FORMAT = "gossiplab-checkpoint-1"


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Atomically write ``state``; a crash mid-write leaves the previous checkpoint intact."""
    payload = {"format": FORMAT, **state}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; anything else is refused."""
    import pickle

    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    data = read_bytes(path, "checkpoint", memory_bytes() // 2)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except pickle.UnpicklingError as e:
        # torch's message advises retrying with weights_only=False: never pass that on
        if any(w in str(e) for w in ("GLOBAL", "global", "REDUCE", "reduce", "BUILD", "class")):
            raise UserError(f"checkpoint {path} holds code (pickled Python objects beyond tensors "
                            "and plain values) and is refused: a checkpoint is never allowed to "
                            "run code") from None
        raise UserError(f"checkpoint {path} is corrupted or not a gossiplab checkpoint "
                        "(unreadable pickle)") from None
    except Exception as e:  # noqa: BLE001 - a damaged file raises many types (zip, pickle, struct...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"checkpoint {path} is corrupted or not a gossiplab checkpoint ({first[:200]})"
                        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"checkpoint {path} is not a gossiplab checkpoint")
    return state

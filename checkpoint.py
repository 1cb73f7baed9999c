"""Checkpoints: one file that holds everything needed to rebuild the model and to continue training.

    {'format': FORMAT, 'config': DAEConfig as plain types, 'args': train.py's flags,
     'model': weights, 'ema': EMA weights, 'opt': optimizer state,
     'step': steps done, 'examples': examples seen, 'rng': RNG states}

Written atomically (temporary file, fsync, rename), so a crash at any moment leaves either the
previous checkpoint or the new one, never half a file. Loadable with
torch.load(path, weights_only=True, map_location='cpu').
"""
import os

import torch

from dae import DAEConfig, DiffusionAutoencoder

FORMAT = "dae-checkpoint-v1"


def save_checkpoint(path: str, ckpt: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **ckpt}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str) -> dict:
    """The checkpoint dict, or ValueError/FileNotFoundError with a sentence saying what is wrong."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # pickle, zip and EOF errors all mean the same thing to a user
        raise ValueError(f"{path} is not a readable checkpoint (truncated, corrupt, or not a "
                         f"checkpoint at all): {type(e).__name__}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by this repo's train.py")
    return ckpt


def build_model(ckpt: dict, weights: str = "ema") -> DiffusionAutoencoder:
    """Rebuild the model from the checkpoint alone, with its EMA (default) or raw weights."""
    if weights not in ("ema", "model"):
        raise ValueError(f"unknown weights {weights!r}: choose ema or model")
    try:
        model = DiffusionAutoencoder(DAEConfig.from_dict(ckpt["config"]))
        model.load_state_dict(ckpt[weights])
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        raise ValueError(f"checkpoint config is incompatible with this version of the code: "
                         f"{str(e).splitlines()[0]}") from None
    return model.eval()

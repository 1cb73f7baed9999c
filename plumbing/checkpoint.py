"""Checkpoints and the run folder: one file that holds everything needed to rebuild the model and to
continue training, and the rules that keep a run folder from ever losing a run.

    {'format': FORMAT, 'config': DAEConfig as plain types, 'args': train.py's flags,
     'model': weights, 'ema': EMA weights, 'opt': optimizer state,
     'step': steps done, 'examples': examples seen, 'rng': RNG states}

Written atomically (temporary file, fsync, rename), so a crash at any moment leaves either the
previous checkpoint or the new one, never half a file. Loadable with
torch.load(path, weights_only=True, map_location='cpu').

The run folder that holds a checkpoint, and its life cycle, are plumbing/run_folder.py.
"""
import errno
import hashlib
import os
import shutil

import torch

from dae import DAEConfig, DiffusionAutoencoder

FORMAT = "dae-checkpoint-v1"


def save_checkpoint(path: str, ckpt: dict) -> None:
    """Atomic: on any failure (a full disk, say) the partial file is removed and `path` is untouched."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **ckpt}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as RuntimeError
        if os.path.exists(tmp):
            os.remove(tmp)
        kept = f"the previous checkpoint {path} is intact" if os.path.exists(path) else "no checkpoint was kept"
        # torch.save says "enforce fail at inline_container.cc" when the disk fills: the free space tells
        reason = "no space left on device" if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e) \
            or disk_full(path) else (getattr(e, "strerror", None) or str(e).splitlines()[0])
        raise OSError(f"could not write checkpoint {path}: {reason} (in {os.path.dirname(os.path.abspath(path))}); "
                      f"{kept}") from None


def disk_full(path: str, margin: int = 64 * 2 ** 20) -> bool:
    """Whether the disk that holds `path` has less than `margin` bytes free."""
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < margin
    except OSError:
        return False


def weights_digest(state: dict) -> str:
    """A SHA-256 of a state dict's names and tensor bytes: the identity of a set of weights."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def training_state(args: dict, model, ema, opt, disc, disc_opt, step: int, batch_size: int, precision: str,
                   elapsed: float, device) -> dict:
    """What a checkpoint holds to rebuild the model and to continue exactly (module docstring)."""
    return {"config": model.cfg.to_dict(), "args": args, "model": model.state_dict(), "ema": ema.state_dict(),
            "opt": opt.state_dict(), "step": step, "examples": step * batch_size, "precision": precision,
            "elapsed": elapsed,
            **({"disc": disc.state_dict(), "disc_opt": disc_opt.state_dict()} if disc is not None else {}),
            "rng": {"cpu": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}}


def restore(ckpt: dict, model, ema, opt, disc, disc_opt, device) -> tuple:
    """Load training_state's weights, optimizer states and RNG states; (step, elapsed seconds). A checkpoint
    that lacks any of them (another version's, or edited) is refused in one sentence."""
    try:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["opt"])
        if disc is not None:
            disc.load_state_dict(ckpt["disc"])
            disc_opt.load_state_dict(ckpt["disc_opt"])
        torch.set_rng_state(ckpt["rng"]["cpu"])
        if device.type == "cuda" and ckpt["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        return ckpt["step"], ckpt["elapsed"]
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        what = f"has no {e.args[0]!r}" if isinstance(e, KeyError) else f"does not fit this code ({type(e).__name__})"
        raise ValueError(f"--resume: the checkpoint {what}: it was written by another version of this code, or "
                         f"edited. eval.py and sample.py may still read it; training cannot continue from it") from None


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
    if weights not in ckpt and "config" in ckpt:
        raise ValueError(f"this checkpoint holds no {weights} weights (a shipped checkpoint keeps the EMA weights "
                         f"only): use --weights ema")
    try:
        model = DiffusionAutoencoder(DAEConfig.from_dict(ckpt["config"]))
        state = ckpt[weights]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"the checkpoint's config cannot build a model with this version of the code "
                         f"({type(e).__name__}: {e})") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state.items()}
    missing, unexpected = sorted(expected.keys() - given.keys()), sorted(given.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & given.keys() if expected[k] != given[k])
    if missing or unexpected or reshaped:
        first = (missing + unexpected + reshaped)[0]
        raise ValueError(f"the checkpoint's weights do not fit the model its config describes: {len(missing)} "
                         f"missing, {len(unexpected)} unexpected, {len(reshaped)} of another shape (e.g. {first!r}); "
                         f"it was written by another version of this code, or edited")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"the checkpoint's {weights} weights are not finite (NaN or inf in {len(bad)} tensors, "
                         f"e.g. {bad[0]!r}): the run diverged; its images would be meaningless. Retrain with a "
                         f"lower --lr" + (", or try --weights model" if weights == "ema" else ""))
    model.load_state_dict(state)
    return model.eval()

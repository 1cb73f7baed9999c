"""Checkpoints and the run folder: one file that holds everything needed to rebuild the model and to
continue training, and the rules that keep a run folder from ever losing a run.

    {'format': FORMAT, 'config': DAEConfig as plain types, 'args': train.py's flags,
     'model': weights, 'ema': EMA weights, 'opt': optimizer state,
     'step': steps done, 'examples': examples seen, 'rng': RNG states}

Written atomically (temporary file, fsync, rename), so a crash at any moment leaves either the
previous checkpoint or the new one, never half a file. Loadable with
torch.load(path, weights_only=True, map_location='cpu').

A run folder holds ckpt.pt, log.jsonl and samples/. `train.py --overwrite` never deletes a run
before its replacement exists: the old run is moved into RUN/replaced-XXXX/ once the new run has
passed every check, and that folder is deleted when the new run writes its first checkpoint.
"""
import errno
import glob
import json
import os
import shutil
import tempfile

import torch

from dae import DAEConfig, DiffusionAutoencoder

FORMAT = "dae-checkpoint-v1"
# what a run is made of: train.py's files, and sample.py's default outputs beside the checkpoint
RUN_FILES = ("ckpt.pt", "log.jsonl", "samples", "reconstructions.png", "interpolation.png")


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
        reason = "no space left on device" if getattr(e, "errno", None) == errno.ENOSPC or \
            "No space left" in str(e) else (getattr(e, "strerror", None) or str(e).splitlines()[0])
        raise OSError(f"could not write checkpoint {path}: {reason} (in {os.path.dirname(os.path.abspath(path))}); "
                      f"{kept}") from None


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
    model.load_state_dict(state)
    return model.eval()


def write_log_lines(path: str, lines: list) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(lines)
    os.replace(tmp, path)


def log_lines_up_to(path: str, step: int) -> list:
    """The complete log lines of steps <= step (a kill can leave the last line half-written)."""
    kept = []
    if os.path.exists(path):
        for line in open(path):
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                pass
    return kept


def remove_partial_files(out: str) -> None:
    """A kill during a write leaves ckpt.pt.tmp or log.jsonl.tmp: never a usable file, so remove it."""
    for name in ("ckpt.pt.tmp", "log.jsonl.tmp"):
        if os.path.isfile(os.path.join(out, name)):
            os.remove(os.path.join(out, name))


def set_aside(out: str):
    """Move the run in `out` into a new out/replaced-XXXX/ folder; returns it (None if no run was there)."""
    present = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
    if not present:
        return None
    aside = tempfile.mkdtemp(prefix="replaced-", dir=out)
    for f in present:
        os.replace(os.path.join(out, f), os.path.join(aside, f))
    return aside


def drop_set_aside(aside) -> None:
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def find_set_aside(out: str) -> list:
    """Runs set aside by an --overwrite that never reached its first checkpoint."""
    return sorted(glob.glob(os.path.join(out, "replaced-*")))


def prepare_run_folder(args):
    """Checks of --out before any work: (checkpoint to resume or None). Deletes nothing."""
    ckpt_path, log_path = os.path.join(args.out, "ckpt.pt"), os.path.join(args.out, "log.jsonl")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a file; give a folder for the run")
    aside = find_set_aside(args.out)
    note = f" ({aside[-1]} holds a run that an interrupted --overwrite set aside)" if aside else ""
    if args.resume:
        if not os.path.exists(ckpt_path):
            raise ValueError(f"--resume: no checkpoint in {args.out} to resume from{note}")
        return load_checkpoint(ckpt_path)
    if os.path.exists(ckpt_path) or os.path.exists(log_path):
        if not args.overwrite:
            what = "a run" if os.path.exists(ckpt_path) else "the log of a run that never wrote a checkpoint"
            raise ValueError(f"{args.out} already holds {what}: pass --resume to continue it, "
                             f"--overwrite to replace it, or another --out")
    return None

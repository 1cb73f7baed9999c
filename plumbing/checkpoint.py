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
RunFolder is that life cycle, as train.py calls it: checks before any work, start (signals, set-aside,
the log of a resumed run cut back to its checkpoint), log lines, checkpoints, and the sentence that
says where the last checkpoint is when a run stops.
"""
import errno
import glob
import json
import os
import shutil
import signal
import tempfile

import torch
from tqdm import tqdm

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
    """Load training_state's weights, optimizer states and RNG states; (step, elapsed seconds)."""
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


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during training: a checkpoint was written and the run can be resumed."""


class RunFolder:
    """One training run's folder (module docstring). Only the main process (rank 0) writes to it."""

    def __init__(self, args):
        """Checks --out before any work and deletes nothing; .resumed is the checkpoint to continue, or None."""
        self.out = args.out
        self.ckpt_path, self.log_path = os.path.join(args.out, "ckpt.pt"), os.path.join(args.out, "log.jsonl")
        self.resumed = prepare_run_folder(args)
        self.main, self.aside, self.saved_step, self.signal, self.handlers = True, None, None, None, {}

    def start(self, step: int, overwrite: bool, main: bool) -> None:
        """Every check has passed: from here on the folder changes, and Ctrl-C / SIGTERM stop the run at the
        end of a step, with a checkpoint (a second Ctrl-C stops it at once)."""
        self.main = main
        self.handlers = {sig: signal.signal(sig, self.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        if self.resumed is not None:
            self.saved_step = step
        if not main:
            return
        remove_partial_files(self.out)
        self.aside = set_aside(self.out) if overwrite else None
        if self.aside:
            print(f"--overwrite: the previous run is moved to {self.aside} and deleted once this run writes its "
                  f"first checkpoint")
        os.makedirs(os.path.join(self.out, "samples"), exist_ok=True)
        # a resumed run redoes the steps after its checkpoint, so their lines go
        write_log_lines(self.log_path, log_lines_up_to(self.log_path, step) if self.resumed is not None else [])

    def on_signal(self, signum, frame):
        if self.signal:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        tqdm.write(f"{self.signal}: stopping after this step to write a checkpoint (Ctrl-C again to stop at once)")

    def grid_path(self, examples: int) -> str:
        return os.path.join(self.out, "samples", f"recon_{examples:010d}.png")

    def log(self, record: dict) -> None:
        if self.main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def save(self, state: dict) -> None:
        """Write the checkpoint; the run an --overwrite set aside goes only now that its replacement exists."""
        if not self.main:
            return
        save_checkpoint(self.ckpt_path, state)
        drop_set_aside(self.aside)
        self.aside, self.saved_step = None, state["step"]

    def where(self) -> str:
        """Where the last checkpoint is and how to continue (the end of every message of a stopped run)."""
        if self.saved_step is None:
            return "no checkpoint had been written yet" + (
                f"; the run this one replaced is still in {self.aside}" if self.aside else "")
        return (f"the last checkpoint is {self.ckpt_path} (step {self.saved_step:,}); continue with: "
                f"python train.py --out {self.out} --resume")

    def close(self) -> None:
        for sig, handler in self.handlers.items():
            signal.signal(sig, handler)

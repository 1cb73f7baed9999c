"""A training run's folder and its life cycle: nothing a user made is lost, and one process writes it.

A run folder holds ckpt.pt, log.jsonl, samples/ (the grids) and two files of its own: .lock and
.run-files. The rules:
  - One writer: the main process of a run holds an OS lock on RUN/.lock (flock; the OS releases it when
    the process dies, however it dies) from before the folder changes to the end; a second train.py on
    the same folder is refused in one sentence that names the holder.
  - Only what the run made: .run-files lists every file the run wrote (a manifest). --overwrite moves
    exactly those into RUN/replaced-XXXX/ (for a run written before the manifest: ckpt.pt if it is a
    checkpoint, log.jsonl and samples/recon_*.png); anything else in the folder stays where it is.
  - The old run stays until the new one is worth more: replaced-XXXX/ is deleted only when the new run
    writes a scheduled checkpoint (--ckpt-every, or its end), never by the checkpoint of a stop; every
    message of a stop, a restart or a --resume names where it is.
RunFolder is that life cycle as train.py calls it: checks before any work, start (lock, signals,
set-aside, the log of a resumed run cut back to its checkpoint), log lines, checkpoints, and the
sentence that says where the last checkpoint is when a run stops.
"""
import glob
import json
import os
import shutil
import signal
import socket
import tempfile
import time

from tqdm import tqdm

from data import split_record
from plumbing.checkpoint import FORMAT, load_checkpoint, save_checkpoint

try:
    import fcntl
except ImportError:  # Windows: no flock; the folder is then not locked
    fcntl = None

LOCK, MANIFEST = ".lock", ".run-files"
HELD = {}  # folder -> its open lock file: this process's locks (a second run in one process reuses its own)


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during training: a checkpoint was written and the run can be resumed."""


def holder(folder: str):
    """Who holds folder's lock now (its .lock's text), or None if nobody else does."""
    path = os.path.join(folder, LOCK)
    if fcntl is None or not os.path.isfile(path) or os.path.realpath(folder) in HELD:
        return None
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
            return None
        except BlockingIOError:
            return f.read().strip() or "another process"


def lock(folder: str):
    """An exclusive lock on folder/.lock, held while the returned file stays open (the process's life)."""
    os.makedirs(folder, exist_ok=True)
    key = os.path.realpath(folder)
    if key in HELD and not HELD[key].closed:
        return HELD[key]
    f = open(os.path.join(folder, LOCK), "a+")
    if fcntl is not None:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise ValueError(f"{folder} is in use by another run ({holder}): wait for it to end, or choose "
                             f"another --out") from None
    f.seek(0)
    f.truncate()
    f.write(f"train.py, pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    f.flush()
    HELD[key] = f
    return f


def refuse_busy(paths) -> None:
    """Refuse to write into a run folder while a training holds it (eval, sample, probe beside a checkpoint)."""
    for folder in {os.path.dirname(os.path.abspath(p)) for p in paths if p}:
        busy = holder(folder)
        if busy:
            raise ValueError(f"{folder} is a run folder in use ({busy}): write the outputs elsewhere, or wait for "
                             f"the run to end")


def write_lines(path: str, lines: list) -> None:
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


def run_files(out: str) -> list:
    """What the run in `out` made, relative to `out`: its manifest, or for an older run what train.py names."""
    path = os.path.join(out, MANIFEST)
    if os.path.exists(path):
        try:
            listed = json.load(open(path))
            return [f for f in listed if os.path.exists(os.path.join(out, f))] + [MANIFEST]
        except (OSError, ValueError):
            pass  # unreadable: fall back to the names, the safe side
    found = [f for f in ("log.jsonl",) if os.path.exists(os.path.join(out, f))]
    try:
        if os.path.exists(os.path.join(out, "ckpt.pt")) and load_checkpoint(os.path.join(out, "ckpt.pt"))["format"] == FORMAT:
            found.append("ckpt.pt")
    except (OSError, ValueError):
        pass  # not a checkpoint of ours: the user's file, left alone
    return found + sorted(os.path.relpath(f, out) for f in glob.glob(os.path.join(out, "samples", "recon_*.png")))


def set_aside(out: str):
    """Move the run in `out` (run_files) into a new out/replaced-XXXX/; returns it (None if no run was there)."""
    present = run_files(out)
    if not present:
        return None
    aside = tempfile.mkdtemp(prefix="replaced-", dir=out)
    for f in present:
        os.makedirs(os.path.dirname(os.path.join(aside, f)), exist_ok=True)
        os.replace(os.path.join(out, f), os.path.join(aside, f))
    return aside


def find_set_aside(out: str) -> list:
    """Runs set aside by an --overwrite whose new run has not yet written a scheduled checkpoint."""
    return sorted(glob.glob(os.path.join(out, "replaced-*")))


def prepare_run_folder(args):
    """Checks of --out before any work: (checkpoint to resume or None). Deletes nothing."""
    ckpt_path, log_path = os.path.join(args.out, "ckpt.pt"), os.path.join(args.out, "log.jsonl")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a file; give a folder for the run")
    aside = find_set_aside(args.out)
    note = f" ({aside[-1]} holds the run that an --overwrite set aside)" if aside else ""
    if args.resume:
        if not os.path.exists(ckpt_path):
            raise ValueError(f"--resume: no checkpoint in {args.out} to resume from{note}")
        return load_checkpoint(ckpt_path)
    if os.path.exists(ckpt_path) or os.path.exists(log_path):
        if not args.overwrite:
            what = "a run" if os.path.exists(ckpt_path) else "the log of a run that never wrote a checkpoint"
            raise ValueError(f"{args.out} already holds {what}{note}: pass --resume to continue it, "
                             f"--overwrite to replace it, or another --out")
        if os.path.exists(ckpt_path) and "ckpt.pt" not in run_files(args.out):
            raise ValueError(f"--overwrite: {ckpt_path} is not a checkpoint this code wrote, and the new run would "
                             f"write over it: move it away, or choose another --out")
    return None


class RunFolder:
    """One training run's folder (module docstring). Only the main process (rank 0) writes to it."""

    def __init__(self, args, main: bool = True):
        """Checks --out before any work and deletes nothing; .resumed is the checkpoint to continue, or None.
        A folder another run holds is refused now; start() takes the lock."""
        self.out, self.main = args.out, main
        self.ckpt_path, self.log_path = os.path.join(args.out, "ckpt.pt"), os.path.join(args.out, "log.jsonl")
        busy = holder(args.out) if main and os.path.isdir(args.out) else None
        if busy:
            raise ValueError(f"{args.out} is in use by another run ({busy}): wait for it to end, or choose another --out")
        self.locked = None
        self.resumed = prepare_run_folder(args)
        self.aside, self.saved_step, self.signal, self.handlers, self.made = None, None, None, {}, set()
        self.split = None
        if self.resumed is not None and self.resumed.get("set_aside"):  # a stopped --overwrite, resumed
            kept = os.path.join(self.out, self.resumed["set_aside"])
            self.aside = kept if os.path.isdir(kept) else None

    def check_data(self, data: str, holdout: int) -> None:
        """Record what identifies the training split of a folder (data.split_record); a resumed run's folder
        must still have the split it was trained on, wherever the folder now is."""
        if data == "cifar10":
            return
        self.split = split_record(data, holdout)
        before = (self.resumed or {}).get("split")
        if before and before["train_sha256"] != self.split["train_sha256"]:
            raise ValueError(f"--resume: {data} is not the folder this run was trained on as it was "
                             f"({before['files']:,} images then, {self.split['files']:,} now), so its training "
                             f"split changed; restore the folder as it was, or start a new run with --overwrite")

    def start(self, step: int, overwrite: bool) -> None:
        """Every check has passed: from here on the folder changes, and Ctrl-C / SIGTERM stop the run at the
        end of a step, with a checkpoint (a second Ctrl-C stops it at once)."""
        self.handlers = {sig: signal.signal(sig, self.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        if self.resumed is not None:
            self.saved_step = step
        if not self.main:
            return
        self.locked = lock(self.out)
        for name in ("ckpt.pt.tmp", "log.jsonl.tmp", MANIFEST + ".tmp"):  # a kill during a write leaves these
            if os.path.isfile(os.path.join(self.out, name)):
                os.remove(os.path.join(self.out, name))
        if overwrite:
            self.aside = set_aside(self.out)
        if self.aside:
            print(f"the previous run is in {self.aside}: it is deleted once this run writes a scheduled checkpoint "
                  f"(a stop before that keeps it)")
        others = [a for a in find_set_aside(self.out) if a != self.aside]
        if others:
            print(f"note: {', '.join(others)} hold(s) runs set aside earlier; nothing deletes them")
        os.makedirs(os.path.join(self.out, "samples"), exist_ok=True)
        if self.resumed is not None:
            self.made = set(run_files(self.out)) - {MANIFEST}
        # a resumed run redoes the steps after its checkpoint, so their lines go
        write_lines(self.log_path, log_lines_up_to(self.log_path, step) if self.resumed is not None else [])
        self.add("log.jsonl")

    def add(self, name: str) -> None:
        """Record a file of the run in the manifest (written atomically)."""
        if name not in self.made:
            self.made.add(name)
            write_lines(os.path.join(self.out, MANIFEST), [json.dumps(sorted(self.made))])

    def on_signal(self, signum, frame):
        if self.signal:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        tqdm.write(f"{self.signal}: stopping after this step to write a checkpoint (Ctrl-C again to stop at once)")

    def grid_path(self, examples: int) -> str:
        name = os.path.join("samples", f"recon_{examples:010d}.png")
        self.add(name)
        return os.path.join(self.out, name)

    def log(self, record: dict) -> None:
        if self.main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def save(self, state: dict, scheduled: bool) -> None:
        """Write the checkpoint. A scheduled one (--ckpt-every, or the run's end) makes the run worth more than
        the one an --overwrite set aside, which goes only then; a stop's checkpoint keeps it."""
        if not self.main:
            return
        aside = os.path.basename(self.aside) if self.aside and not scheduled else None
        save_checkpoint(self.ckpt_path, {**state, "set_aside": aside, "split": self.split})
        self.add("ckpt.pt")
        if scheduled and self.aside:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None
        self.saved_step = state["step"]

    def where(self) -> str:
        """Where the last checkpoint is and how to continue (the end of every message of a stopped run)."""
        kept = f"; the run this one replaced is still in {self.aside}" if self.aside else ""
        if self.saved_step is None:
            return "no checkpoint had been written yet" + kept
        return (f"the last checkpoint is {self.ckpt_path} (step {self.saved_step:,}); continue with: "
                f"python train.py --out {self.out} --resume{kept}")

    def close(self) -> None:
        """Signals back to what they were, and the folder unlocked."""
        for sig, handler in self.handlers.items():
            signal.signal(sig, handler)
        if self.locked is not None:
            HELD.pop(os.path.realpath(self.out), None)
            self.locked.close()
            self.locked = None

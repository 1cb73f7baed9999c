import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# a tiny network and run, shared by the CLI tests (from cpu-v1: the groups and up-sampling the suite was written with)
TINY_FLAGS = ["--preset", "cpu-v1", "--image-size", "16", "--base-channels", "16", "--channel-mult", "1,2",
              "--enc-channel-mult", "1,2", "--num-res-blocks", "1", "--enc-num-res-blocks", "1", "--z-dim", "32",
              "--z-map-channels", "4", "--batch-size", "8", "--warmup", "0", "--holdout", "8", "--device", "cpu"]


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """48 small images in two class folders: smooth colour gradients, some not square."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(48):
        d = root / ("a" if i % 2 else "b")
        d.mkdir(exist_ok=True)
        h, w = (16, 16) if i % 3 else (20, 24)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        c = rng.uniform(0, 1, size=(3, 3))
        img = np.stack([c[k, 0] + c[k, 1] * yy + c[k, 2] * xx for k in range(3)], -1)
        Image.fromarray((np.clip(img / img.max(), 0, 1) * 255).astype(np.uint8)).save(d / f"{i:03d}.png")
    return str(root)


def run_cli(script, *args, timeout=300):
    """Run one of the repo's CLIs in a subprocess from the repo root, as README says: `python train.py`,
    `python -m tools.bench` for a tool. (returncode, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a user runs it: no path help
    env["OMP_NUM_THREADS"] = "1"
    command = ["-m", script[:-3].replace("/", ".")] if script.startswith("tools/") else [os.path.join(ROOT, script)]
    p = subprocess.run([sys.executable, *command, *args], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=ROOT)
    return p.returncode, p.stdout, p.stderr


def kill_every_process_of(marker: str) -> None:
    """SIGKILL every process whose command line holds `marker`. torchrun starts each rank in a session
    of its own, so killing torchrun's process group would leave the ranks running (and writing)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read() and int(pid) != os.getpid():
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass  # gone already


def kill_midway(cmd: list, out: str, lines: int = 29, timeout: float = 200) -> None:
    """Start a training command (argv, run from the repo root) whose run folder is `out`, wait until its
    log holds `lines` lines, then SIGKILL every process of the run, as a crash of the machine would."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT,
                            start_new_session=True)
    log_path = os.path.join(out, "log.jsonl")
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(log_path) and sum(1 for _ in open(log_path)) >= lines:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    kill_every_process_of(out)
    proc.wait()


@pytest.fixture(scope="session")
def tiny_ckpt(image_folder, tmp_path_factory):
    """A checkpoint of the tiny network after 32 examples, trained on image_folder with 8 held out."""
    out = str(tmp_path_factory.mktemp("run"))
    code, _, err = run_cli("train.py", *TINY_FLAGS, "--data", image_folder, "--out", out, "--examples", "32")
    assert code == 0, err
    return os.path.join(out, "ckpt.pt")


def exits_with(main, argv, capsys=None) -> str:
    """Run a script's main(argv) in this process, expecting it to stop with one error line: that line."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    message = e.value.code
    assert isinstance(message, str) and message.startswith("error:") and "\n" not in message.strip(), message
    return message

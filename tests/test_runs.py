"""A run folder never loses a run: resume keeps the run's flags and logs true averages, --overwrite
deletes nothing before the new run's first checkpoint, Ctrl-C writes a checkpoint, a full disk
leaves the previous checkpoint, and the messages say what is on disk."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from plumbing import flags as train_flags
import train
from plumbing.checkpoint import save_checkpoint
from conftest import ROOT, TINY_FLAGS, exits_with, run_cli


def read_log(out):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def start(flags, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *flags, "--out", out],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def wait_for_log_lines(proc, out, n, timeout=120):
    path, deadline = os.path.join(out, "log.jsonl"), time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(path) and sum(1 for _ in open(path)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError("the run ended (or never logged) before it could be interrupted")


def test_resume_takes_every_untyped_flag_from_the_checkpoint():
    saved = train_flags.plain_args(train_flags.parse_args(["--preset", "cpu", "--out", "runs/x", "--device", "cpu"]))
    args = train_flags.merge_resume_args(train_flags.parse_args(["--out", "runs/x", "--resume"]), saved)
    # the paper preset's intervals (this invocation's defaults) must not replace the cpu run's
    assert (args.log_every, args.ckpt_every, args.sample_every) == (10, 8_000, 16_000)
    assert args.device == "cpu" and args.preset == "cpu" and args.examples == 92_000
    typed = train_flags.merge_resume_args(train_flags.parse_args(["--out", "runs/x", "--resume", "--log-every", "3"]), saved)
    assert typed.log_every == 3 and typed.ckpt_every == 8_000


def test_resume_of_a_checkpoint_from_before_upsample_uses_nearest_conv():
    saved = train_flags.plain_args(train_flags.parse_args(["--preset", "cpu", "--out", "runs/x"]))
    del saved["upsample"]
    args = train_flags.merge_resume_args(train_flags.parse_args(["--out", "runs/x", "--resume"]), saved)
    assert args.upsample == "conv"
    with pytest.raises(ValueError, match="--upsample transpose"):
        train_flags.merge_resume_args(train_flags.parse_args(["--out", "runs/x", "--resume", "--upsample", "transpose"]),
                                      saved)


def test_resume_of_a_checkpoint_from_before_norm_groups_uses_32_groups():
    saved = train_flags.plain_args(train_flags.parse_args(["--preset", "cpu", "--out", "runs/x"]))
    del saved["norm_groups"]
    args = train_flags.merge_resume_args(train_flags.parse_args(["--out", "runs/x", "--resume"]), saved)
    assert args.norm_groups == 32
    with pytest.raises(ValueError, match="--norm-groups"):
        train_flags.merge_resume_args(train_flags.parse_args(["--out", "runs/x", "--resume", "--norm-groups", "4"]),
                                      saved)


def test_resume_accepts_the_same_folder_written_another_way(image_folder):
    saved = train_flags.plain_args(train_flags.parse_args([*TINY_FLAGS, "--data", image_folder]))
    args = train_flags.merge_resume_args(train_flags.parse_args(["--resume", "--data", image_folder + "/./"]), saved)
    assert args.data == image_folder + "/./"
    with pytest.raises(ValueError, match="--data /elsewhere"):
        train_flags.merge_resume_args(train_flags.parse_args(["--resume", "--data", "/elsewhere"]), saved)


def test_ctrl_c_checkpoints_and_resume_logs_true_averages(image_folder, tmp_path):
    flags = [*TINY_FLAGS, "--data", image_folder, "--examples", "800", "--phase1-frac", "0.25",
             "--ckpt-every", "100000", "--sample-every", "100000", "--dropout", "0.1"]
    ref, cut = str(tmp_path / "ref"), str(tmp_path / "cut")
    assert run_cli("train.py", *flags, "--log-every", "1", "--out", ref)[0] == 0
    per_step = [r["loss"] for r in read_log(ref)]
    proc = start([*flags, "--log-every", "4"], cut)
    wait_for_log_lines(proc, cut, 5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert "checkpoint" in err and f"python train.py --out {cut} --resume" in err
    stopped = torch.load(os.path.join(cut, "ckpt.pt"), weights_only=True)["step"]
    assert 20 <= stopped < 100
    # resumed with no other flag: log_every 4 (not the preset's 10), ckpt_every and the rest from the checkpoint
    code, _, err = run_cli("train.py", "--out", cut, "--resume")
    assert code == 0, err
    log = read_log(cut)
    assert log[-1]["step"] == 100 and stopped in [r["step"] for r in log]
    previous = 0
    for r in log:  # each line is the mean over exactly the steps since the previous line
        assert r["loss"] == pytest.approx(sum(per_step[previous:r["step"]]) / (r["step"] - previous), rel=1e-5)
        previous = r["step"]
    wa = torch.load(os.path.join(ref, "ckpt.pt"), weights_only=True)
    wb = torch.load(os.path.join(cut, "ckpt.pt"), weights_only=True)
    assert all(torch.equal(wa["ema"][k], wb["ema"][k]) for k in wa["ema"])


def snapshot(out):
    return {f: open(os.path.join(out, f), "rb").read() for f in ("ckpt.pt", "log.jsonl")}


def test_overwrite_validates_before_it_touches_the_old_run(image_folder, tmp_path):
    out = str(tmp_path / "run")
    base = [*TINY_FLAGS, "--data", image_folder, "--out", out, "--examples", "16"]
    assert run_cli("train.py", *base, "--sample-every", "8")[0] == 0
    before, grids = snapshot(out), sorted(os.listdir(os.path.join(out, "samples")))
    message = exits_with(train.main, [*base, "--overwrite", "--data", "/no/such/folder"])
    assert "data folder not found" in message
    message = exits_with(train.main, [*base, "--overwrite", "--preset", "paper", "--base-channels", "128",
                                      "--examples", "32000000"])
    assert "--allow-slow" in message
    assert snapshot(out) == before and sorted(os.listdir(os.path.join(out, "samples"))) == grids
    # killed before its first checkpoint: the old run waits in replaced-*/, and --resume says so
    proc = start([*TINY_FLAGS, "--data", image_folder, "--examples", "100000", "--ckpt-every", "1000000",
                  "--log-every", "1", "--overwrite"], out)
    wait_for_log_lines(proc, out, 3)
    proc.kill()
    proc.wait()
    aside = [d for d in os.listdir(out) if d.startswith("replaced-")]
    assert len(aside) == 1 and not os.path.exists(os.path.join(out, "ckpt.pt"))
    assert snapshot(os.path.join(out, aside[0])) == before
    assert aside[0] in exits_with(train.main, ["--out", out, "--resume"])
    assert "never wrote a checkpoint" in exits_with(train.main, base)
    # a replacement that reaches its checkpoint removes what it replaced, and only that
    train.main([*base, "--overwrite", "--seed", "1"])
    assert torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)["args"]["seed"] == 1
    # the interrupted attempt's set-aside run stays for the user to delete; nothing else is set aside
    assert [d for d in os.listdir(out) if d.startswith("replaced-")] == aside


def test_partial_files_from_a_kill_are_removed_on_the_next_start(image_folder, tmp_path):
    out = str(tmp_path / "run")
    base = [*TINY_FLAGS, "--data", image_folder, "--out", out, "--examples", "16"]
    train.main(base)
    (tmp_path / "run" / "ckpt.pt.tmp").write_bytes(b"half a checkpoint")
    train.main([*base, "--resume"])
    assert not os.path.exists(os.path.join(out, "ckpt.pt.tmp"))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_keeps_the_previous_checkpoint(tmp_path):
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, {"step": 1})
    before = open(path, "rb").read()
    os.symlink("/dev/full", path + ".tmp")  # every write to it fails with ENOSPC, as on a full disk
    with pytest.raises(OSError, match="no space left on device.*previous checkpoint .* is intact"):
        save_checkpoint(path, {"step": 2, "weights": torch.zeros(100_000)})
    assert open(path, "rb").read() == before and not os.path.lexists(path + ".tmp")


def test_non_finite_loss_before_any_checkpoint_says_so(image_folder, tmp_path):
    out = str(tmp_path / "run")
    message = exits_with(train.main, [*TINY_FLAGS, "--data", image_folder, "--out", out, "--examples", "400",
                                      "--lr", "1e30", "--log-every", "1", "--ckpt-every", "100000"])
    assert "non-finite" in message and "no checkpoint had been written yet" in message
    assert not os.path.exists(os.path.join(out, "ckpt.pt"))


@pytest.fixture(scope="module")
def one_image(tmp_path_factory):
    root = tmp_path_factory.mktemp("one")
    from PIL import Image
    Image.new("RGB", (16, 16), (200, 10, 10)).save(root / "only.png")
    return str(root)


@pytest.mark.parametrize("flags,message", [
    (["--holdout", "-3"], "--holdout must be >= 0, got -3"),
    (["--ema-decay", "1"], "--ema-decay must be in [0, 1)"),
    (["--lr", "0"], "--lr must be a positive number"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1)"),
    (["--warmup", "-1"], "--warmup must be >= 0"),
    (["--norm-groups", "0"], "--norm-groups must be positive, got 0"),
    (["--resume", "--overwrite"], "pass one of them"),
    (["--device", "bogus"], "is not a device"),
    (["--device", "CPU"], "is not a device"),
    (["--device", "cuda:x"], "is not a device"),
    (["--device", "mps"], "no MPS"),
    (["--data", "ONE"], "--holdout 8 leaves no training images"),
    (["--out", "FILE"], "is a file"),
])
def test_bad_flags_name_the_flag(flags, message, one_image, image_folder, tmp_path):
    if flags == ["--device", "mps"] and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    (tmp_path / "file").write_text("not a folder")
    flags = [{"ONE": one_image, "FILE": str(tmp_path / "file")}.get(f, f) for f in flags]
    data = [] if "--data" in flags else ["--data", image_folder]
    out = [] if "--out" in flags else ["--out", str(tmp_path / "r")]
    assert message in exits_with(train.main, [*TINY_FLAGS, *data, *out, "--examples", "16", *flags])


def test_help_shows_preset_values_not_none():
    text = train_flags.build_parser().format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "paper: 32000000; cpu: 92000" in text and "paper: 100; cpu: 10" in text

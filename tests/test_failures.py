"""A careless or unlucky user, replayed (issue 27): each case ends in one sentence and a non-zero exit before
any work, or goes on correctly, and no case loses a file the user made."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

import eval as eval_script
import latent_sampler
import sample
import train
from conftest import ROOT, TINY_FLAGS, exits_with, run_cli
from plumbing import checkpoint, device
from tools import cost

TRAIN = [*TINY_FLAGS, "--examples", "16"]


@pytest.fixture
def folder(image_folder, tmp_path):
    """A copy of the shared image folder that a case may change."""
    return shutil.copytree(image_folder, tmp_path / "images")


def trained(folder, out, *more):
    train.main([*TRAIN, "--data", str(folder), "--out", str(out), *more])
    return os.path.join(out, "ckpt.pt")


@pytest.mark.parametrize("flag", ["--se-weight", "--lpips-weight", "--adv-weight", "--r1-weight", "--kl-weight",
                                  "--lr", "--gamma", "--phase1-mix"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_non_finite_number_is_refused_naming_its_flag(flag, value, image_folder, tmp_path):
    message = exits_with(train.main, [*TRAIN, "--data", image_folder, "--out", str(tmp_path / "r"), flag, value])
    assert f"{flag} must be a finite number" in message and not os.path.exists(tmp_path / "r")


@pytest.mark.parametrize("flags,expected", [
    (["--seed", str(2 ** 64)], "--seed must be in 0 .. 2^63 - 1"),
    (["--attn", "7"], "--attn 7: the decoder's resolutions are 16,8 px"),
    (["--data", "FILE"], "is a file: give the folder of images it is in"),
])
def test_bad_flags_get_one_sentence(flags, expected, image_folder, tmp_path):
    image = os.path.join(image_folder, "a", "001.png")
    argv = [*TRAIN, "--data", image_folder, "--out", str(tmp_path / "r"), *[image if f == "FILE" else f for f in flags]]
    assert expected in exits_with(train.main, argv)


def test_a_second_writer_of_a_run_folder_is_refused_naming_the_holder(image_folder, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); f.write('pid 4242 in a test'); f.flush(); "
                               "print('held', flush=True); time.sleep(60)", str(out / ".lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        message = exits_with(train.main, [*TRAIN, "--data", image_folder, "--out", str(out)])
        assert "is in use by another run (pid 4242 in a test)" in message
        assert os.listdir(out) == [".lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    trained(image_folder, out)  # the OS released the lock with its holder
    assert os.path.exists(out / "ckpt.pt")


def new_run_logged(out) -> bool:
    """The --overwrite run has set the old one aside and logged its first line."""
    try:
        return any(d.startswith("replaced-") for d in os.listdir(out)) and os.path.getsize(out / "log.jsonl") > 0
    except OSError:  # between the move of the old log and the first line of the new one
        return False


def test_overwrite_keeps_the_old_run_through_a_stop_before_a_scheduled_checkpoint(image_folder, tmp_path):
    out = tmp_path / "r"
    old = trained(image_folder, out)
    old_ema = torch.load(old, weights_only=True)["ema"]
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), *TINY_FLAGS, "--data", image_folder, "--out", str(out),
           "--examples", "1600", "--ckpt-every", "800", "--log-every", "1", "--overwrite"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and not new_run_logged(out):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # a stop before the first scheduled checkpoint
    _, err = proc.communicate(timeout=120)
    aside = [d for d in os.listdir(out) if d.startswith("replaced-")]
    assert proc.returncode == 130 and len(aside) == 1 and aside[0] in err, err
    kept = torch.load(out / aside[0] / "ckpt.pt", weights_only=True)["ema"]
    assert all(torch.equal(kept[k], old_ema[k]) for k in old_ema)  # the old run, whole
    assert aside[0] in exits_with(train.main, [*TRAIN, "--data", image_folder, "--out", str(out)])  # the next start names it
    assert torch.load(out / "ckpt.pt", weights_only=True)["step"] < 100  # stopped before step 100's checkpoint
    train.main(["--out", str(out), "--resume"])
    assert not os.path.exists(out / aside[0])  # its scheduled checkpoint made the new run worth more


def test_overwrite_moves_only_what_a_run_made(image_folder, tmp_path):
    out = tmp_path / "r"
    trained(image_folder, out)
    (out / "samples" / "mine.png").write_bytes(b"user")  # the user's own files, named like a run's
    (out / "reconstructions.png").write_bytes(b"user")
    made = json.load(open(out / ".run-files"))
    assert made == ["ckpt.pt", "log.jsonl", "samples/recon_0000000016.png"]
    train.main([*TRAIN, "--data", image_folder, "--out", str(out), "--overwrite", "--ckpt-every", "8",
                "--log-every", "1", "--examples", "32"])
    assert (out / "samples" / "mine.png").read_bytes() == b"user" and (out / "reconstructions.png").read_bytes() == b"user"
    other = tmp_path / "o"
    other.mkdir()
    (other / "ckpt.pt").write_bytes(b"the user's own file of that name")
    message = exits_with(train.main, [*TRAIN, "--data", image_folder, "--out", str(other), "--overwrite"])
    assert "is not a checkpoint this code wrote" in message
    assert (other / "ckpt.pt").read_bytes() == b"the user's own file of that name"


def test_outputs_that_are_inputs_are_refused(folder, tmp_path):
    ckpt = trained(folder, tmp_path / "r")
    before = open(ckpt, "rb").read()
    source = ["--ckpt", ckpt, "--data", str(folder), "--n", "2", "--steps", "1", "--device", "cpu"]
    assert "--save" in exits_with(eval_script.main, [*source, "--save", ckpt]) and open(ckpt, "rb").read() == before
    assert "name the same file" in exits_with(eval_script.main, [*source, "--json", str(tmp_path / "p"),
                                                                 "--save", str(tmp_path / "p")])
    assert "inside --data" in exits_with(train.main, [*TRAIN, "--data", str(folder), "--out", str(folder / "run")])
    assert "inside --data" in exits_with(sample.main, [*source, "--out", str(folder)])


def test_a_changed_data_folder_is_not_evaluated_as_held_out_nor_resumed(folder, tmp_path):
    ckpt = trained(folder, tmp_path / "r")
    source = ["--ckpt", ckpt, "--n", "2", "--steps", "1", "--device", "cpu"]
    copy = shutil.copytree(folder, tmp_path / "moved")  # a copy is the same data: its split is the recorded one
    code, _, err = run_cli("eval.py", *source, "--data", str(copy))
    assert code == 0, err
    for i in range(10):  # images added after training: the recomputed held-out split would hold training images
        Image.new("RGB", (16, 16), (i, 0, 0)).save(folder / "a" / f"new{i}.png")
    message = exits_with(eval_script.main, [*source, "--data", str(folder)])
    assert "is not the folder this checkpoint was trained on as it was (48 images then, 58 now)" in message
    assert "training split changed" in exits_with(train.main, ["--out", str(tmp_path / "r"), "--resume",
                                                               "--data", str(folder)])


def test_non_finite_weights_and_latent_models_are_refused(image_folder, tmp_path):
    ckpt = trained(image_folder, tmp_path / "r")
    state = torch.load(ckpt, weights_only=True)
    state["ema"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in state["ema"].items()}
    bad = str(tmp_path / "nan.pt")
    checkpoint.save_checkpoint(bad, {k: v for k, v in state.items() if k != "format"})
    message = exits_with(eval_script.main, ["--ckpt", bad, "--data", image_folder, "--n", "2", "--device", "cpu"])
    assert "ema weights are not finite" in message and "--weights model" in message
    flags = ["--ckpt", ckpt, "--data", image_folder, "--out", str(tmp_path / "lat.pt"), "--examples", "64",
             "--hidden", "16", "--layers", "1", "--n", "2", "--steps", "1", "--latent-steps", "2", "--device", "cpu"]
    latent_sampler.main(flags)
    message = exits_with(latent_sampler.main, [*flags, "--hidden", "32"])
    assert "was trained with --hidden 16" in message
    assert "non-finite" in exits_with(latent_sampler.main, [*flags, "--overwrite", "--lr", "1e30"])
    assert torch.load(tmp_path / "lat.pt", weights_only=True)["trained_for"]["hidden"] == 16  # the good one kept


def test_a_checkpoint_that_cannot_be_resumed_says_so(image_folder, tmp_path):
    ckpt = trained(image_folder, tmp_path / "r")
    state = torch.load(ckpt, weights_only=True)
    checkpoint.save_checkpoint(ckpt, {k: v for k, v in state.items() if k not in ("format", "opt")})
    message = exits_with(train.main, ["--out", str(tmp_path / "r"), "--resume"])
    assert "the checkpoint has no 'opt'" in message and "eval.py and sample.py may still read it" in message


def test_an_unreadable_image_is_one_sentence_before_or_during_the_run(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # every 16 x 16 image is a decompression bomb now
    assert "cannot read image" in exits_with(train.main, [*TRAIN, "--data", str(folder), "--out", str(tmp_path / "b")])
    monkeypatch.undo()
    victim = sorted((folder / "a").iterdir())[-1]
    victim.write_bytes(b"not an image")  # met by a DataLoader worker, mid-run
    code, _, err = run_cli("train.py", *TINY_FLAGS, "--data", str(folder), "--out", str(tmp_path / "w"),
                           "--examples", "400", "--data-in-memory", "off", "--data-workers", "1", "--holdout", "1")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code != 0 and "Traceback" not in err and len(lines) == 1, err[-2000:]
    assert f"cannot read image {victim}" in lines[0] and "stopped at step" in lines[0]


def test_a_full_disk_is_named_as_such(tmp_path, monkeypatch):
    def fail(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file")
    monkeypatch.setattr(torch, "save", fail)
    monkeypatch.setattr(checkpoint, "disk_full", lambda path: True)
    with pytest.raises(OSError, match="no space left on device"):
        checkpoint.save_checkpoint(str(tmp_path / "c.pt"), {})
    assert os.listdir(tmp_path) == []


def test_the_slow_run_guard_decides_from_flops_not_the_load():
    # README's CPU run, 1.8 GFLOP x 80,000 examples, fits even at 4 GFLOP/s; the paper's run does not at 2,000
    hours = 1.84 * 80_000 / 2.0 / 3600
    assert device.slow_run_problem(1.84, 80_000, hours, 2.0, "cpu") is None
    hours = 47.3 * 32e6 / 1000 / 3600
    assert "--allow-slow" in device.slow_run_problem(47.3, 32_000_000, hours, 1000, "cpu")


def test_tools_take_help_and_refuse_bad_files(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cost.main(["--help"])
    assert e.value.code == 0 and "bench_json" in capsys.readouterr().out
    (tmp_path / "b.json").write_text("{not json")
    assert "cannot read the bench JSON" in exits_with(cost.main, [str(tmp_path / "b.json")])


def test_the_new_tools_refuse_bad_input_in_one_sentence(tiny_ckpt, tmp_path):
    from tools import same_numbers, ship
    assert "is not a checkout of this repository" in exits_with(same_numbers.main, ["--repo", str(tmp_path)])
    (tmp_path / "bad.json").write_text("{not json")
    assert "is not a fingerprint file" in exits_with(same_numbers.main, ["--compare", str(tmp_path / "bad.json"),
                                                                         str(tmp_path / "missing.json")])
    assert "--images needs --data" in exits_with(ship.main, ["--ckpt", tiny_ckpt, "--out", str(tmp_path / "s.pt"),
                                                             "--images", str(tmp_path / "h.npz")])
    assert "would overwrite --ckpt" in exits_with(ship.main, ["--ckpt", tiny_ckpt, "--out", tiny_ckpt])
    assert not os.path.exists(tmp_path / "s.pt")  # nothing written before the refusal

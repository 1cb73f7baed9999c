"""train.py end to end: phases, logs, checkpoints, exact resume after SIGKILL, and bad input."""
import json
import os
import sys

import pytest
import torch

from conftest import ROOT, TINY_FLAGS, kill_midway, run_cli


def read_log(out):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_phase_switch_and_run_folder(image_folder, tmp_path):
    out = str(tmp_path / "run")
    # 80 examples, phase 1 = the first 20: steps 1-2 (examples 0-15) are phase 1, step 3 straddles
    code, _, err = run_cli("train.py", *TINY_FLAGS, "--data", image_folder, "--out", out, "--examples", "80",
                           "--phase1-frac", "0.25", "--log-every", "1", "--sample-every", "40", "--ckpt-every", "40")
    assert code == 0, err
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, 11))
    assert [r["phase"] for r in log] == [1, 1, 2, 2, 2, 2, 2, 2, 2, 2]
    assert all(r["loss"] > 0 and r["examples"] == 8 * r["step"] for r in log)
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True, map_location="cpu")
    assert ckpt["step"] == 10 and ckpt["examples"] == 80 and ckpt["args"]["schedule"] == "sc4"
    assert sorted(os.listdir(os.path.join(out, "samples"))) == ["recon_0000000040.png", "recon_0000000080.png"]
    # sample.py rebuilds the model from the checkpoint alone
    code, stdout, err = run_cli("sample.py", "--ckpt", os.path.join(out, "ckpt.pt"), "--data", image_folder,
                                "--steps", "4", "--n", "4", "--device", "cpu")
    assert code == 0, err
    assert os.path.getsize(os.path.join(out, "reconstructions.png")) > 0
    assert os.path.getsize(os.path.join(out, "interpolation.png")) > 0


@pytest.mark.parametrize("reset", [False, True])
def test_switch_reset_adam_restarts_the_moments_at_the_first_phase_2_step(reset, image_folder, tmp_path):
    out = str(tmp_path / "run")
    # batch 8, phase 1 = the first 20 of 80 examples: step 3 (examples 16-23) is the first with phase-2 examples
    code, _, err = run_cli("train.py", *TINY_FLAGS, "--data", image_folder, "--out", out, "--examples", "80",
                           "--phase1-frac", "0.25", *(["--switch-reset-adam"] if reset else []))
    assert code == 0, err
    state = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)["opt"]["state"]
    assert {float(s["step"]) for s in state.values()} == {8.0 if reset else 10.0}


@pytest.mark.parametrize("recipe", [[], ["--adv-weight", "0.5", "--adv-start", "400", "--latent", "spatial",
                                           "--z-map-channels", "0", "--kl-weight", "0.01"]])
def test_sigkill_then_resume_is_bit_identical(recipe, image_folder, tmp_path):
    """Also with the adversarial loss on: the discriminator and its optimizer are in the checkpoint."""
    flags = [*TINY_FLAGS, "--data", image_folder, "--examples", "1600", "--phase1-frac", "0.25",
             "--log-every", "2", "--ckpt-every", "40", "--sample-every", "100000", "--dropout", "0.1", *recipe]
    ref, cut = str(tmp_path / "ref"), str(tmp_path / "cut")
    code, _, err = run_cli("train.py", *flags, "--out", ref)
    assert code == 0, err
    kill_midway([sys.executable, os.path.join(ROOT, "train.py"), *flags, "--out", cut], cut)
    killed_at = torch.load(os.path.join(cut, "ckpt.pt"), weights_only=True)["step"]
    assert 0 < killed_at < 200
    code, _, err = run_cli("train.py", *flags, "--out", cut, "--resume")
    assert code == 0, err
    a, b = read_log(ref), read_log(cut)
    assert [r["step"] for r in b] == list(range(2, 201, 2))
    assert [(r["loss"], r["phase"], r["lr"]) for r in a] == [(r["loss"], r["phase"], r["lr"]) for r in b]
    wa = torch.load(os.path.join(ref, "ckpt.pt"), weights_only=True)
    wb = torch.load(os.path.join(cut, "ckpt.pt"), weights_only=True)
    assert all(torch.equal(wa["ema"][k], wb["ema"][k]) for k in wa["ema"])
    if recipe:
        assert all(torch.equal(wa["disc"][k], wb["disc"][k]) for k in wa["disc"])


def test_run_folder_protection_and_resume_checks(image_folder, tmp_path):
    out = str(tmp_path / "run")
    base = [*TINY_FLAGS, "--data", image_folder, "--out", out, "--examples", "16"]
    assert run_cli("train.py", *base)[0] == 0
    code, _, err = run_cli("train.py", *base)
    assert code != 0 and "already holds a run" in err and "Traceback" not in err
    code, _, err = run_cli("train.py", *base, "--resume", "--schedule", "linear", "--lr", "0.5")
    assert code != 0 and "--schedule linear (checkpoint: sc4)" in err and "--lr 0.5" in err
    code, _, err = run_cli("train.py", *base, "--resume", "--device", "cpu")  # run-only flags may change
    assert code == 0, err
    code, _, err = run_cli("train.py", *TINY_FLAGS, "--data", image_folder, "--out", str(tmp_path / "new"), "--resume")
    assert code != 0 and "no checkpoint" in err
    assert run_cli("train.py", *base, "--overwrite")[0] == 0


def test_non_finite_loss_stops_and_keeps_checkpoint(image_folder, tmp_path):
    out = str(tmp_path / "run")
    code, _, err = run_cli("train.py", *TINY_FLAGS, "--data", image_folder, "--out", out, "--examples", "400",
                           "--lr", "1e30", "--log-every", "1", "--ckpt-every", "8")
    assert code != 0 and "non-finite" in err and "Traceback" not in err
    event = read_log(out)[-1]
    assert event["event"] == "non-finite loss" and event["step"] >= 1
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)
    assert ckpt["step"] < event["step"]


@pytest.fixture(scope="module")
def bad_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "empty").mkdir()
    (root / "broken" / "c").mkdir(parents=True)
    for i in range(20):
        (root / "broken" / "c" / f"{i}.jpg").write_bytes(b"not a jpeg at all")
    return root


@pytest.mark.parametrize("flags,message", [
    (["--schedule", "foo"], "unknown schedule"),
    (["--schedule", "sc"], "malformed shifted-cosine"),
    (["--schedule", "sc-2"], "S > 0"),
    (["--pred", "x1"], "invalid choice"),
    (["--phase1-frac", "1.5"], "--phase1-frac must be in [0, 1]"),
    (["--phase1-frac", "-0.1"], "--phase1-frac must be in [0, 1]"),
    (["--phase1-mix", "1"], "--phase1-mix must be in [0, 1)"),
    (["--switch-warmup", "-5"], "--switch-warmup must be >= 0"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--examples", "-5"], "--examples must be positive"),
    (["--data", "/no/such/folder"], "data folder not found"),
    (["--data", "EMPTY"], "holds no images"),
    (["--data", "BROKEN"], "cannot read image"),
    (["--channel-mult", "1,x"], "comma-separated integers"),
    (["--device", "cuda"], "no CUDA GPU"),
])
def test_bad_flags_give_one_clear_error(flags, message, bad_folders, image_folder, tmp_path):
    flags = [{"EMPTY": str(bad_folders / "empty"), "BROKEN": str(bad_folders / "broken")}.get(f, f) for f in flags]
    data = [] if "--data" in flags else ["--data", image_folder]
    code, _, err = run_cli("train.py", *TINY_FLAGS, *data, "--out", str(tmp_path / "r"), "--examples", "16", *flags)
    if flags == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert code != 0
    assert message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(("error:", "train.py: error:"))


def test_paper_preset_on_cpu_says_how_long_and_points_to_cpu_preset(tmp_path):
    code, _, err = run_cli("train.py", "--phase1-frac", "0.25", "--schedule", "sc4", "--device", "cpu",
                           "--data", "/no/such/folder", "--out", str(tmp_path / "r"))
    assert code != 0 and "days" in err and "--preset cpu" in err and "Traceback" not in err


def test_cifar10_offline_message(monkeypatch):
    import urllib.error

    import torchvision

    import data

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(OSError, match="could not download CIFAR-10.*--data"):
        data.load_images("cifar10", "train")

"""The scripts around training: wrong results are refused, outputs are checked before the work and
written together, and bad input gets one line (sample, eval, devices; the tools in test_tools.py)."""
import json
import os

import numpy as np
import pytest
import torch

import eval as eval_script
import sample
from conftest import exits_with
from plumbing.cli import write_all
from plumbing.device import pick_device

@pytest.mark.parametrize("name", ["cpu", "auto"])
def test_pick_device_accepts_real_devices(name):
    assert pick_device(name).type in ("cpu", "cuda", "mps")


@pytest.mark.parametrize("name", ["bogus", "CPU", "cuda:x", "mps:0", "xpu", "meta"])
def test_pick_device_refuses_the_rest(name):
    with pytest.raises(ValueError, match="is not a device: choose auto, cpu, cuda, cuda:N or mps"):
        pick_device(name)


def test_write_all_writes_every_file_or_none(tmp_path):
    a, b = str(tmp_path / "a.json"), str(tmp_path / "b.npz")

    def fails(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="could not write .*b.npz: No space left on device; no output was written"):
        write_all({a: lambda f: f.write(b"{}"), b: fails})
    assert os.listdir(tmp_path) == []
    write_all({a: lambda f: f.write(b"{}"), b: lambda f: f.write(b"x")})
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.npz"]


def source(tiny_ckpt, image_folder, *more):
    return ["--ckpt", tiny_ckpt, "--data", image_folder, "--device", "cpu", "--steps", "2", *more]


@pytest.mark.parametrize("main", [sample.main, eval_script.main])
def test_more_images_than_the_split_is_refused(main, tiny_ckpt, image_folder):
    message = exits_with(main, source(tiny_ckpt, image_folder, "--n", "50"))
    assert "--n 50 is more than the 8 images of the heldout split" in message


def test_a_larger_holdout_than_trained_with_is_refused(tiny_ckpt, image_folder, tmp_path):
    message = exits_with(eval_script.main, source(tiny_ckpt, image_folder, "--holdout", "20", "--n", "4"))
    assert "--holdout 20 is more than the 8 images" in message and "12 of them were trained on" in message
    js = str(tmp_path / "e.json")  # a smaller one is a subset of the held-out images: fine
    eval_script.main(source(tiny_ckpt, image_folder, "--holdout", "4", "--n", "4", "--json", js))
    assert json.load(open(js))["n"] == 4


def test_sample_grid_rows_hold_the_images_there_are(tiny_ckpt, image_folder, tmp_path):
    from PIL import Image
    sample.main(source(tiny_ckpt, image_folder, "--n", "3", "--out", str(tmp_path)))
    w, h = Image.open(tmp_path / "reconstructions.png").size
    assert (w, h) == (1 + 3 * 17, 1 + 3 * 17)  # 3 columns and 3 rows of 16-px images, 1-px padding


@pytest.mark.parametrize("flag,path,message", [
    ("--json", "/etc/passwd/e.json", "is a file, not a folder"),
    ("--save", "/proc/e.npz", "cannot be written"),
    ("--grid", "FOLDER", "is a folder; give a file name"),
])
def test_eval_outputs_are_checked_before_the_work(flag, path, message, tiny_ckpt, image_folder, tmp_path,
                                                  monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("reconstruction started before the outputs were checked")

    monkeypatch.setattr(eval_script, "reconstruct_all", no_work)
    js = str(tmp_path / "e.json")
    path = str(tmp_path) if path == "FOLDER" else path
    more = [flag, path] + (["--json", js] if flag != "--json" else [])
    text = exits_with(eval_script.main, source(tiny_ckpt, image_folder, "--n", "4", *more))
    assert flag in text and message in text and not os.path.exists(js)


def test_fid_dependency_is_checked_before_the_work(tiny_ckpt, image_folder, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("reconstruction started before --fid's dependency was checked")

    monkeypatch.setattr(eval_script, "reconstruct_all", no_work)
    assert "--fid" in exits_with(eval_script.main, source(tiny_ckpt, image_folder, "--n", "4", "--fid"))


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    from data import load_images
    v16 = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 257)             # 0 .. 65535 in 257 steps
    Image.fromarray(v16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    x = load_images(str(tmp_path), "all", 0, 16)
    expected = torch.from_numpy((v16 // 257).astype(np.uint8))
    assert torch.equal(x[0, 0], expected) and torch.equal(x[0, 1], expected) and torch.equal(x[0, 2], expected)

"""probe.py: the linear probe, the manipulation along its directions, and class labels of a folder."""
import json
import os

import pytest
import torch

import probe
from conftest import exits_with, run_cli
from data import list_images, load_labels, split_files


def blobs(n, classes=3, dims=20, seed=0):
    """Gaussian clusters a few standard deviations apart, with an offset and uneven scales."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(classes, dims, generator=torch.Generator().manual_seed(99))
    y = torch.randint(classes, (n,), generator=g)
    z = centres[y] + torch.randn(n, dims, generator=g)
    return 5 + z * torch.linspace(0.5, 4, dims), y


def test_probe_separates_a_separable_set_far_above_chance():
    z, y = blobs(600)
    z_test, y_test = blobs(300, seed=1)
    p = probe.fit_probe(z, y, 3)
    assert probe.accuracy(p, z, y) > 0.95 and probe.accuracy(p, z_test, y_test) > 0.9
    # and finds nothing in noise
    noise = torch.randn(300, 20, generator=torch.Generator().manual_seed(2))
    assert probe.accuracy(p, noise, y_test) < 0.6


def test_manipulation_moves_the_class_logit_by_s_times_the_weight_norm():
    z, y = blobs(600)
    p = probe.fit_probe(z, y, 3)
    W = p[0]
    before = probe.logits(p, z)
    for c in range(3):
        for s in (-1.0, 2.0, 5.0):
            after = probe.logits(p, probe.manipulate(p, z, c, s))
            # logit_c(z') - logit_c(z) = s w_c . w_c / ||w_c|| = s ||w_c||
            assert torch.allclose(after[:, c] - before[:, c], torch.full((600,), s * float(W[c].norm())), atol=1e-3)
        # strong enough, every point becomes class c
        assert (probe.logits(p, probe.manipulate(p, z, c, 50.0)).argmax(1) == c).all()


def test_labels_follow_the_class_sub_folders_in_load_images_order(image_folder, tmp_path):
    for split in ("train", "heldout"):
        y, classes = load_labels(image_folder, split, holdout=8)
        files = split_files(list_images(image_folder), split, 8)
        assert classes == ["a", "b"]
        assert y.tolist() == [classes.index(os.path.basename(os.path.dirname(f))) for f in files]
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "x.png").write_bytes(open(list_images(image_folder)[0], "rb").read())
    with pytest.raises(ValueError, match="class sub-folders"):
        load_labels(str(flat))


def test_probe_cli_end_to_end(tiny_ckpt, image_folder, tmp_path):
    js, png = str(tmp_path / "p.json"), str(tmp_path / "m.png")
    code, stdout, err = run_cli("probe.py", "--ckpt", tiny_ckpt, "--data", image_folder, "--manipulate", "b",
                                "--strengths", "0,3", "--n-manipulate", "2", "--steps", "2", "--device", "cpu",
                                "--json", js, "--grid", png)
    assert code == 0, err
    r = json.load(open(js))
    assert r["classes"] == ["a", "b"] and r["n_train"] == 40 and r["n_test"] == 8 and r["z_dims"] == 32
    assert 0 <= r["test_accuracy"] <= 1 and r["train_accuracy"] >= r["majority"] - 1e-6
    m = r["manipulation"]
    assert m["class"] == "b" and m["strengths"] == [0, 3] and len(m["logit_after_reencoding"]) == 2
    assert "probe accuracy" in stdout and os.path.getsize(png) > 0


@pytest.mark.parametrize("args, message", [
    (["--manipulate", "2"], "neither a class nor a class index"),
    (["--manipulate", "c"], "neither a class nor a class index"),
    (["--grid", "x.png"], "pass --manipulate"),
    (["--steps", "0"], "--steps must be positive"),
])
def test_probe_bad_input(args, message, tiny_ckpt, image_folder):
    assert message in exits_with(probe.main, ["--ckpt", tiny_ckpt, "--data", image_folder, "--device", "cpu", *args])

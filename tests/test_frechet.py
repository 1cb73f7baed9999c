"""fd_classifier: the Fréchet distance in the features of the repo's own CIFAR-10 classifier (plumbing/frechet.py)."""
import json
import os

import numpy as np
import pytest
import torch
from scipy import linalg

from conftest import ROOT, run_cli
from plumbing.frechet import (WEIGHTS, Classifier, accuracy, add_noise, blur, fd_classifier, features,
                              frechet_distance, load_classifier)
from tools.train_classifier import augment

HELDOUT = os.path.join(ROOT, "models", "heldout.npz")


@pytest.fixture(scope="module")
def real():
    """The 500 shipped held-out CIFAR-10 images and labels, and the committed classifier."""
    with np.load(HELDOUT) as f:
        return torch.from_numpy(f["images"]), torch.from_numpy(f["labels"]).long(), load_classifier()


def test_frechet_distance_matches_scipy_sqrtm():
    g = np.random.default_rng(0)
    a = g.normal(size=(300, 8)) @ g.normal(size=(8, 8))
    b = g.normal(size=(200, 8)) @ g.normal(size=(8, 8)) + 0.5
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    want = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a + s_b - 2 * linalg.sqrtm(s_a @ s_b).real)
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-8)


def test_zero_for_identical_sets_and_invariant_to_order(real):
    images, _, net = real
    assert abs(fd_classifier(net, images, images)) < 1e-6
    shuffled = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(1))]
    half = images[:250]
    assert fd_classifier(net, half, images) == pytest.approx(fd_classifier(net, half, shuffled), rel=1e-6)
    assert fd_classifier(net, half, images) > 0


@pytest.mark.parametrize("damage, levels", [(blur, (0.5, 1.0, 1.5, 2.0)), (add_noise, (4, 8, 16, 32))])
def test_grows_monotonically_with_blur_and_with_noise(real, damage, levels):
    images, _, net = real
    fds = [fd_classifier(net, images, damage(images, level)) for level in levels]
    assert all(a < b for a, b in zip(fds, fds[1:])), fds
    assert fds[0] > 0


def test_the_committed_classifier_classifies(real):
    """Its held-out accuracy is what its training record says, and far above chance (0.1)."""
    images, labels, net = real
    with open(WEIGHTS.replace(".pt", ".json")) as f:
        record = json.load(f)
    assert accuracy(net, images, labels) > 0.7 and record["heldout_accuracy"] > 0.7
    assert os.path.getsize(WEIGHTS) < 4e6


def test_features_refuse_what_they_cannot_measure(tmp_path):
    net = Classifier(8).eval()
    with pytest.raises(ValueError, match="3 x 32 x 32"):
        features(net, torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="no classifier at"):
        load_classifier(str(tmp_path / "missing.pt"))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a classifier"):
        load_classifier(str(tmp_path / "bad.pt"))


def test_augment_crops_and_flips_each_image():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(2):  # each output is a crop of the padded image, or its mirror
        padded = torch.nn.functional.pad(x[i:i + 1], (4, 4, 4, 4), mode="reflect")[0]
        crops = [padded[:, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(2)) for c in crops)


def test_train_classifier_end_to_end_and_its_bad_input(image_folder, tmp_path):
    out = tmp_path / "c.pt"
    code, _, err = run_cli("tools/train_classifier.py", "--data", image_folder, "--out", str(out), "--holdout", "4",
                           "--epochs", "1", "--batch-size", "8", "--width", "4", "--precision", "fp32")
    assert code == 0, err
    net = load_classifier(str(out))
    assert json.load(open(tmp_path / "c.json"))["heldout"] == 4 and net.width == 4
    for flags, message in [(["--epochs", "0"], "--epochs must be positive"), (["--lr", "nan"], "finite"),
                           (["--out", str(tmp_path)], "is a folder")]:
        code, _, err = run_cli("tools/train_classifier.py", "--data", image_folder, "--out", str(out), *flags)
        assert code != 0 and message in err and "Traceback" not in err, err


def test_fd_anchors_bad_input(image_folder, tmp_path):
    for flags, message in [(["--n", "1"], "--n must be at least 2"), (["--classifier", str(tmp_path / "none.pt")], "no classifier at"),
                           (["--json", str(tmp_path)], "is a folder")]:
        code, _, err = run_cli("tools/fd_anchors.py", "--data", image_folder, "--json", str(tmp_path / "a.json"), *flags)
        assert code != 0 and message in err and "Traceback" not in err, err

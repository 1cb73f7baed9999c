"""figures.py draws from schedules and from run logs."""
import json
import os

import pytest

from tools import figures


def test_schedule_and_curve_figures(tmp_path):
    figures.schedules_figure(str(tmp_path / "s.png"))
    logs = tmp_path / "results"
    logs.mkdir()
    with open(logs / "a.log.jsonl", "w") as f:
        for step in range(1, 11):
            f.write(json.dumps({"step": step, "examples": 8 * step, "phase": 1 if step < 4 else 2,
                                "loss": 1.0 / step}) + "\n")
    figures.curves_figure(str(logs), str(tmp_path / "c.png"))
    assert os.path.getsize(tmp_path / "s.png") > 10_000 and os.path.getsize(tmp_path / "c.png") > 10_000


def test_recipe_and_spectra_figures(tmp_path):
    assert not figures.recipes_figure(str(tmp_path / "none"), str(tmp_path / "r.png"))
    results = tmp_path / "recipes"
    results.mkdir()
    records = [{"mode": m, "steps": k, "psnr": 10 + k / 10, "ssim": 0.5, "sharpness": 0.8}
               for m in ("stochastic", "inversion") for k in (1, 3, 50)]
    (results / "2-paper.json").write_text(json.dumps(records))
    assert figures.recipes_figure(str(results), str(tmp_path / "r.png"))
    latent = tmp_path / "latent"
    latent.mkdir()
    curve = [1.0 / (i + 1) for i in range(64)]
    (latent / "spectrum-2-paper.json").write_text(json.dumps(
        {"originals": {"spectrum": curve}, "reconstructions_50": {"spectrum": curve, "sharpness": 0.9}}))
    (latent / "latent-spectrum-5-paper-spatial.json").write_text(json.dumps(
        {"originals": {"spectrum": curve}, "latent": {"spectrum": [1.0] * 64, "block": 8}, "latent_shape": [4, 8, 8]}))
    assert figures.spectra_figure(str(latent), str(tmp_path / "sp.png"))
    assert os.path.getsize(tmp_path / "r.png") > 10_000 and os.path.getsize(tmp_path / "sp.png") > 10_000


@pytest.mark.parametrize("suite", ["phase1", "shift", "zdim", "decoding"])
def test_sweep_figures_from_the_records_alone(suite, tmp_path):
    assert not figures.sweep_figure(str(tmp_path / "none"), suite, str(tmp_path / "s.png"))
    results = tmp_path / suite
    results.mkdir()
    for i, value in enumerate([1, 2, 4]):
        records = [{"mode": m, "steps": steps, "psnr": 20 + i, "ssim": 0.7, "sharpness": 0.5, "examples": 40_000,
                    "phase1_frac": value / 4, "schedule": f"sc{value}", "z_dim": 32 * value, "time_grid": "uniform"}
                   for m in ("stochastic", "inversion") for steps in (1, 50)]
        (results / f"v{i}.json").write_text(json.dumps(records))
    assert figures.sweep_figure(str(results), suite, str(tmp_path / "s.png"))
    assert os.path.getsize(tmp_path / "s.png") > 10_000
    assert figures.setting({"schedule": "cosine"}, "shift") == 1.0 and figures.setting({"schedule": "sc8"}, "shift") == 8


def test_switch_figure_draws_the_loss_around_the_switch(tmp_path):
    assert not figures.switch_figure({"a": str(tmp_path / "none.log.jsonl")}, str(tmp_path / "s.png"))
    log = tmp_path / "a.log.jsonl"
    log.write_text("\n".join(json.dumps({"examples": e, "phase": 1 if e <= 1000 else 2, "loss": 0.1 + (e > 1000)})
                             for e in range(0, 5000, 100)))
    (tmp_path / "a.json").write_text(json.dumps([{"steps": 50, "mode": "stochastic", "psnr": 21.5}]))
    assert figures.switch_figure({"a": str(log), "b": str(tmp_path / "missing.log.jsonl")}, str(tmp_path / "s.png"))
    assert os.path.getsize(tmp_path / "s.png") > 10_000

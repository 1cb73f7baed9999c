"""figures.py draws from schedules and from run logs."""
import json
import os

import figures


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

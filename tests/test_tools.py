"""The tools (bench, figures, experiments): bad input gets one line, results are never mixed or half
written, and each suite trains and evaluates what its docstring says."""
import json
import os

import pytest

from conftest import exits_with
from tools import bench, experiments, figures

def test_bench_json_and_table_errors(tmp_path):
    assert "--json /etc/passwd/b.json cannot be written" in exits_with(
        bench.main, ["--device", "cpu", "--json", "/etc/passwd/b.json"])
    assert "is not a device" in exits_with(bench.main, ["--device", "bogus"])
    assert "cannot read /no/such.json" in exits_with(bench.main, ["--table", "/no/such.json"])
    (tmp_path / "x.json").write_text("not json")
    assert "is not a JSON file written by this bench.py" in exits_with(bench.main, ["--table", str(tmp_path / "x.json")])


def test_bench_table_prints_the_committed_results(capsys):
    bench.main(["--table", "results/bench-cpu.json"])
    out = capsys.readouterr().out
    assert "| `results/bench-cpu.json` | cpu | cpu | fp32 | 32 | 4.44M |" in out and "| bf16 |" in out


def test_ablation_table_shows_both_conventions_sharpness_and_fd_where_the_record_has_them(tmp_path):
    results = tmp_path / "ablation"
    results.mkdir()
    record = dict(psnr=24.0, ssim=0.8, steps=10, n=4, train_seconds=60.0)
    (results / "6-small-spatial-sc1.json").write_text(json.dumps([{**record, "mode": "stochastic", "sharpness": 0.7},
                                                                   {**record, "mode": "inversion"}]))
    (results / "4-sc4-v-2phase.json").write_text(json.dumps([{**record, "mode": "stochastic", "psnr_diffae": 24.01,
                                                               "ssim_diffae": 0.85, "fd_classifier": 5.261}]))
    old, new = experiments.table(str(results)).splitlines()[-1], experiments.table(str(results)).splitlines()[-2]
    assert "| — / — [24.00 / 0.800] / 0.70 (10 steps, n = 4) | — / — [24.00 / 0.800] (10 steps, n = 4) | 1.0 min |" in old
    assert "| 24.01 / 0.850 [24.00 / 0.800] (fd 5.26) (10 steps, n = 4) | — | 1.0 min | 30.35 / 0.955 |" in new


def test_figures_refuses_a_file_as_out_and_says_what_it_skips(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert "is a file" in exits_with(figures.main, ["--out", str(tmp_path / "f")])
    figures.main(["--out", str(tmp_path / "figs"), "--runs", str(tmp_path / "none"), "--results",
                  str(tmp_path / "none"), "--data", str(tmp_path)])
    out = capsys.readouterr().out
    assert "wrote schedules.png" in out and "skipped reconstructions.png" in out and "no checkpoint" in out
    # an empty --results draws nothing from the committed results/ (only the schedules need no results)
    assert out.splitlines()[0] == f"wrote schedules.png to {tmp_path / 'figs'}/"
    assert sorted(os.listdir(tmp_path / "figs")) == ["schedules.png"]


def test_figures_interpolation_fits_a_small_split(tiny_ckpt, image_folder, tmp_path):
    runs = tmp_path / "runs" / "ablation" / "4-sc4-v-2phase"
    runs.mkdir(parents=True)
    os.symlink(tiny_ckpt, runs / "ckpt.pt")  # a held-out split of 8 images, not 1,000
    figures.main(["--out", str(tmp_path / "figs"), "--runs", str(tmp_path / "runs"), "--data", image_folder])
    assert os.path.getsize(tmp_path / "figs" / "interpolation.png") > 1000


@pytest.fixture
def results(tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    (d / "2-sc4-v-1phase.json").write_text(json.dumps([{"examples": 80_000}]))
    return d


def test_experiments_say_what_they_skip(results, image_folder, capsys):
    experiments.main(["--data", image_folder, "--results", str(results), "--only", "2-sc4-v-1phase"])
    out = capsys.readouterr().out
    assert "skip 2-sc4-v-1phase" in out and "--force" in out and "nothing to do" in out


def test_experiments_refuse_a_result_of_another_budget(results, image_folder):
    message = exits_with(experiments.main, ["--data", image_folder, "--results", str(results), "--examples", "16",
                                            "--only", "2-sc4-v-1phase"])
    assert "80,000 training examples, not the 16 asked for" in message


@pytest.mark.parametrize("flags", [["--only", "4-sc4-v"], ["--examples", "0"], ["--n", "-1"]])
def test_experiments_reject_bad_names_and_counts(flags, image_folder):
    with pytest.raises(SystemExit) as e:
        experiments.main(["--data", image_folder, *flags])
    assert e.value.code == 2  # argparse's usage error, naming the flag


def test_experiments_turn_a_failing_step_into_one_line(image_folder, results, tmp_path, capfd):
    # train.py's default --holdout 1000 cannot be met by a 48-image folder: the child fails at once
    message = exits_with(experiments.main, ["--data", image_folder, "--results", str(results), "--runs",
                                            str(tmp_path / "runs"), "--only", "1-diffae-linear-eps"])
    assert "train.py exited with status 1" in message and "re-run to resume" in message
    err = capfd.readouterr().err
    assert "Traceback" not in err and "--holdout 1000 leaves no training images" in err
    assert sorted(os.listdir(results)) == ["2-sc4-v-1phase.json"]


def test_experiments_refuse_a_finished_training_of_other_flags(results, image_folder, tmp_path, monkeypatch):
    """A run folder trained for another budget is never evaluated as this one's result."""
    run_dir = tmp_path / "runs" / "1-diffae-linear-eps"
    run_dir.mkdir(parents=True)
    (run_dir / "done").write_text(json.dumps(["train.py", "--preset", "cpu", "--examples", "5"]))
    monkeypatch.setattr(experiments, "run", lambda cmd: pytest.fail(f"ran {cmd}"))
    message = exits_with(experiments.main, ["--data", image_folder, "--results", str(results), "--runs",
                                            str(tmp_path / "runs"), "--only", "1-diffae-linear-eps"])
    assert "holds a finished training with other flags" in message and "--runs DIR" in message


def test_experiments_force_retrains_and_replaces_only_at_the_end(results, image_folder, tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "2-sc4-v-1phase"
    run_dir.mkdir(parents=True)
    (run_dir / "done").write_text("")
    calls = []

    def fake_run(cmd):  # stands in for train.py / eval.py; checks the old result is still there meanwhile
        calls.append(cmd)
        assert json.load(open(results / "2-sc4-v-1phase.json")) == [{"examples": 80_000}]
        if "eval.py" in cmd[1]:
            js = cmd[cmd.index("--json") + 1]
            open(js, "w").write(json.dumps({"mode": cmd[cmd.index("--mode") + 1], "examples": 80_000}))
        else:
            (run_dir / "log.jsonl").write_text('{"step": 1}\n')

    monkeypatch.setattr(experiments, "run", fake_run)
    experiments.main(["--data", image_folder, "--results", str(results), "--runs", str(tmp_path / "runs"),
                      "--only", "2-sc4-v-1phase", "--force"])
    assert "train.py" in calls[0][1] and "--overwrite" in calls[0]
    assert [r["mode"] for r in json.load(open(results / "2-sc4-v-1phase.json"))] == ["stochastic", "inversion"]
    assert (results / "2-sc4-v-1phase.log.jsonl").read_text() == '{"step": 1}\n'


def test_recipes_suite_evaluates_every_step_count(image_folder, tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run(cmd):  # stands in for train.py / eval.py
        calls.append(cmd)
        out = cmd[cmd.index("--out") + 1] if "train.py" in cmd[1] else None
        if out:
            os.makedirs(out, exist_ok=True)
            open(os.path.join(out, "log.jsonl"), "w").write('{"step": 1}\n')
        else:
            mode = cmd[cmd.index("--mode") + 1]
            steps = [int(s) for s in cmd[cmd.index("--steps") + 1].split(",")]
            records = [{"mode": mode, "steps": s, "psnr": 10.0 + s, "ssim": 0.5, "n": 4, "examples": 80_000,
                        "train_seconds": 60.0} for s in steps]
            open(cmd[cmd.index("--json") + 1], "w").write(json.dumps(records))

    monkeypatch.setattr(experiments, "run", fake_run)
    results = tmp_path / "results"
    experiments.main(["--suite", "recipes", "--data", image_folder, "--results", str(results), "--runs",
                      str(tmp_path / "runs"), "--only", "3-epsvae-no-lpips"])
    train_cmd, *evals = calls
    assert "--recipe" in train_cmd and "epsvae" in train_cmd and train_cmd[train_cmd.index("--lpips-weight") + 1] == "0"
    assert all("reversed-log" in c for c in evals) and len(evals) == 2
    records = json.load(open(results / "3-epsvae-no-lpips.json"))
    assert sorted((r["mode"], r["steps"]) for r in records) == [(m, s) for m in ("inversion", "stochastic")
                                                               for s in (1, 3, 50)]
    experiments.main(["--suite", "recipes", "--results", str(results), "--table"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 3-epsvae")]
    assert len(rows) == 3 and "| 50 | 60.00 / 0.500 / — (n = 4) | 60.00 / 0.500 / — (n = 4) | 1.0 min |" in rows[2]
    with pytest.raises(SystemExit):
        experiments.main(["--suite", "recipes", "--data", image_folder, "--only", "2-sc4-v-1phase"])


def fake_steps(calls):
    """A stand-in for train.py / eval.py that records each command and writes what experiments.py reads."""
    def run(cmd):
        calls.append(cmd)
        if "train.py" in cmd[1]:
            out = cmd[cmd.index("--out") + 1]
            os.makedirs(out, exist_ok=True)
            open(os.path.join(out, "log.jsonl"), "w").write('{"step": 1}\n')
            return
        steps = [int(s) for s in cmd[cmd.index("--steps") + 1].split(",")]
        records = [{"mode": cmd[cmd.index("--mode") + 1], "steps": s, "psnr": 20.0, "ssim": 0.7, "sharpness": 0.5,
                    "n": int(cmd[cmd.index("--n") + 1]), "examples": 40_000, "train_seconds": 60.0} for s in steps]
        open(cmd[cmd.index("--json") + 1], "w").write(json.dumps(records))
    return run


def test_sweeps_use_half_the_budget_and_fewer_images(image_folder, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(experiments, "run", fake_steps(calls))
    results = tmp_path / "results"
    experiments.main(["--suite", "phase1", "--data", image_folder, "--results", str(results), "--runs",
                      str(tmp_path / "runs"), "--only", "frac-0.5", "frac-1"])
    trains = [c for c in calls if "train.py" in c[1]]
    assert [c[c.index("--phase1-frac") + 1] for c in trains] == ["0.5", "1"]
    assert all(c[c.index("--examples") + 1] == "40000" for c in trains)
    evals = [c for c in calls if "eval.py" in c[1]]
    # frac-1 is decoded in one step only, and has no inversion
    assert [(c[c.index("--mode") + 1], c[c.index("--n") + 1], c[c.index("--steps") + 1]) for c in evals] == [
        ("stochastic", "500", "1,50"), ("inversion", "100", "1,50"), ("stochastic", "500", "1")]
    experiments.main(["--suite", "phase1", "--results", str(results), "--table"])
    assert "| frac-0.5 | `--schedule sc4 --pred v --phase1-frac 0.5` | 50 | 20.00 / 0.700 / 0.50 (n = 500)" \
        in capsys.readouterr().out


def test_decoding_sweep_trains_one_model_and_evaluates_it_per_grid(image_folder, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(experiments, "run", fake_steps(calls))
    runs = tmp_path / "runs"
    experiments.main(["--suite", "decoding", "--data", image_folder, "--results", str(tmp_path / "results"),
                      "--runs", str(runs)])
    trains = [c for c in calls if "train.py" in c[1]]
    assert len(trains) == 1 and trains[0][trains[0].index("--out") + 1] == str(runs / "frac-0.25")
    evals = [c for c in calls if "eval.py" in c[1]]
    assert [c[c.index("--time-grid") + 1] for c in evals] == ["uniform"] * 2 + ["reversed-log"] * 2
    assert all(c[c.index("--steps") + 1] == "1,2,5,10,20,50,100" for c in evals)
    assert trains[0][trains[0].index("--examples") + 1] == "40000"  # the phase1 sweep's training, reused
    assert len({c[c.index("--save") + 1] for c in evals}) == 4  # each grid and mode keeps its own images
    # --force re-evaluates a shared model, it does not train it again
    calls.clear()
    experiments.main(["--suite", "decoding", "--data", image_folder, "--results", str(tmp_path / "results"),
                      "--runs", str(runs), "--force"])
    assert not [c for c in calls if "train.py" in c[1]] and len(calls) == 4


def test_a_point_shared_by_two_sweeps_is_trained_once(image_folder, tmp_path, monkeypatch, capsys):
    # shift sc4 and zdim z512 are the phase1 sweep's frac-0.25: the same training flags
    assert experiments.SWEEPS["shift"]["sc4"][0] == experiments.SWEEPS["phase1"]["frac-0.25"][0]
    z512 = experiments.SWEEPS["zdim"]["z512"][0]
    assert z512[z512.index("--z-dim") + 1] == str(experiments.PRESETS["cpu-v1"]["z_dim"])
    assert z512[:z512.index("--z-dim")] == experiments.SWEEPS["phase1"]["frac-0.25"][0]
    calls = []
    monkeypatch.setattr(experiments, "run", fake_steps(calls))
    results, runs = tmp_path / "results", tmp_path / "runs"
    experiments.main(["--suite", "zdim", "--data", image_folder, "--results", str(results / "zdim"), "--runs",
                      str(runs / "zdim"), "--only", "z512"])  # no phase1 result yet: trained
    assert len([c for c in calls if "train.py" in c[1]]) == 1
    experiments.main(["--suite", "phase1", "--data", image_folder, "--results", str(results / "phase1"), "--runs",
                      str(runs / "phase1"), "--only", "frac-0.25"])
    calls.clear()
    experiments.main(["--suite", "shift", "--data", image_folder, "--results", str(results / "shift"), "--runs",
                      str(runs / "shift"), "--only", "sc4"])
    assert calls == [] and "copied" in capsys.readouterr().out
    assert (results / "shift" / "sc4.json").read_text() == (results / "phase1" / "frac-0.25.json").read_text()
    assert (results / "shift" / "sc4.log.jsonl").exists()


def test_spatial_suite_trains_at_the_full_budget_and_decodes_in_few_steps(image_folder, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(experiments, "run", fake_steps(calls))
    experiments.main(["--suite", "spatial", "--data", image_folder, "--results", str(tmp_path / "results"),
                      "--runs", str(tmp_path / "runs"), "--only", "c8-sc1"])
    train, *evals = calls
    assert "--examples" not in train  # the cpu preset's own 80,000
    assert [train[train.index(f) + 1] for f in ("--latent", "--latent-channels", "--schedule", "--z-map-channels")] \
        == ["spatial", "8", "sc1", "0"]
    assert [c[c.index("--steps") + 1] for c in evals] == ["1,2,3,5,10,50"] * 2
    assert [c[c.index("--n") + 1] for c in evals] == ["500", "100"]

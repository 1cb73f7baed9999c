"""The course kit (tools/make_assignment.py, course/): the student copy holds no solution anywhere, each
exercise is graded on its own, every mutant of the grader's list fails its exercise, and grade.py gives
points and Gradescope's results.json."""
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT
from course import grade, leaks, mutants
from tools import make_assignment as ma

GRADED = os.path.join(ROOT, "course", "graded")


solutions = ma.solution_blocks


@pytest.fixture(scope="module")
def stub_copy(tmp_path_factory):
    out = tmp_path_factory.mktemp("copies") / "hw"
    ma.main(["--out", str(out)])
    return out


def test_every_exercise_is_marked_in_its_file_and_has_graded_tests():
    for k, e in ma.EXERCISES.items():
        assert solutions()[k], f"exercise {k} has no block in {e.file}"
        assert os.path.exists(os.path.join(GRADED, f"test_exercise{k}.py"))
    assert set(grade.POINTS) == set(ma.EXERCISES) and sum(grade.POINTS.values()) == 100
    with pytest.raises(ValueError, match="never ends"):
        ma.blocks("x = 1\n    # BEGIN EXERCISE 3\ny = 2\n", "f.py")


def test_student_copy_is_the_students_only(stub_copy, tmp_path, capsys):
    out = stub_copy
    for k, e in ma.EXERCISES.items():
        student = open(out / e.file).read()
        assert f'raise NotImplementedError("Exercise {k}: ' in student and "EXERCISE" not in student
    readme = open(out / "README.md").read()
    assert readme.startswith("# Assignment") and "For instructors" not in readme and "make_assignment" not in readme
    assert "answers" not in readme.lower() and "--precision fp32" in readme
    for k in ma.EXERCISES:
        assert f"python grade.py --exercise {k}" in readme and (out / "graded" / f"test_exercise{k}.py").exists()
    assert (out / "grade.py").exists()
    for gone in [*ma.INSTRUCTOR_ONLY, "course", ".ci"]:
        assert not (out / gone).exists(), f"{gone} is an instructor's file"
    # an existing folder is never written into; an unknown exercise is one sentence
    with pytest.raises(SystemExit, match="not an empty folder.*--overwrite"):
        ma.main(["--out", str(out)])
    with pytest.raises(SystemExit):
        ma.main(["--out", str(tmp_path / "x"), "--exercises", "9"])
    assert "no exercise 9: choose from 1, 2" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_make_assignment_leaves_a_users_partial_folder_alone(tmp_path):
    mine = tmp_path / "hw.partial"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    ma.make(str(tmp_path / "hw"), [1])
    assert (mine / "notes.txt").read_text() == "mine" and (tmp_path / "hw" / "schedules.py").exists()
    assert sorted(os.listdir(tmp_path)) == ["hw", "hw.partial"]


def test_overwrite_moves_the_old_folder_aside_and_deletes_nothing(tmp_path, capsys):
    out = tmp_path / "hw"
    ma.main(["--out", str(out), "--exercises", "2"])
    (out / "schedules.py").write_text("a student's work\n")
    ma.main(["--out", str(out), "--exercises", "3", "--overwrite"])
    assert "moved what was in" in capsys.readouterr().out
    assert (tmp_path / "hw.replaced-1" / "schedules.py").read_text() == "a student's work\n"
    assert (out / "graded" / "test_exercise3.py").exists() and not (out / "graded" / "test_exercise2.py").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="is a file"):
        ma.main(["--out", str(tmp_path / "file"), "--overwrite"])
    assert (tmp_path / "file").read_text() == "x"


def test_the_copys_own_suite_collects(stub_copy):
    """The repository's tests in the student copy import nothing the copy lacks (the instructors' files)."""
    p = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                       cwd=stub_copy, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(stub_copy)})
    assert p.returncode == 0 and "error" not in p.stdout.strip().split("\n")[-1], p.stdout[-2000:]


def test_stretch_goal_names_the_committed_figure():
    records = json.load(open(os.path.join(ROOT, "results", "speed", "b16m124g8tx-92k-p4.json")))
    record = next(r for r in records if r["steps"] == 10)
    assert record["train_precision"] == "fp32" and record["examples"] == 92_000 and record["phase1_frac"] == 0.4
    assert "--preset cpu --recipe small --phase1-frac 0.4 --precision fp32" in ma.student_page(list(ma.EXERCISES))
    assert round(record["psnr_diffae"], 2) == ma.STRETCH_DB


def test_no_solution_anywhere_in_the_copy(stub_copy):
    """make_assignment refuses a copy with a leak; here the check is run again over the copy it wrote."""
    assert leaks.find(solutions(), str(stub_copy)) == []


def test_the_leak_check_catches_copies_renamed_or_not(tmp_path):
    sol = solutions()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "loss.py").write_text("import torch\nv = alpha * eps - sigma * x0  # a target\n")
    renamed = re.sub(r"\bc\b", "cos_part", re.sub(r"\bs\b", "sin_part", re.sub(r"\bnorm\b", "length", sol[1][0])))
    assert renamed != sol[1][0]
    cell = {"cell_type": "code", "source": [ln + "\n" for ln in renamed.split("\n")], "metadata": {}, "outputs": []}
    (tmp_path / "nb.ipynb").write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": ["hi"]}, cell]}))
    ssim = sol[8][0].replace("mu_x", "m1").replace("mu_y", "m2").replace("var_x", "v1").replace("blur", "smooth")
    (tmp_path / "helper.md").write_text("```python\n" + "\n".join(" " + ln.strip() for ln in ssim.split("\n")) + "\n```\n")
    found = {(k, f) for k, f, _ in leaks.find(sol, str(tmp_path))}
    assert {(2, "results/loss.py"), (1, "nb.ipynb"), (8, "helper.md")} <= found, found
    # the stated equations themselves, in prose, are not solutions
    (tmp_path / "results" / "loss.py").write_text("# v = alpha eps - sigma x_0\nx = alpha(t)\n")
    for f in ("nb.ipynb", "helper.md"):
        os.remove(tmp_path / f)
    assert leaks.find(sol, str(tmp_path)) == []


def test_a_copy_with_a_leak_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(leaks, "find", lambda blocks, folder: [(2, "results/x.py", "alpha * eps - sigma * x0")])
    with pytest.raises(ValueError, match="exercise 2's solution is in the student copy's results/x.py"):
        ma.make(str(tmp_path / "hw"), [2])
    assert not (tmp_path / "hw").exists() and os.listdir(tmp_path) == []


def test_each_exercise_is_graded_alone(tmp_path):
    """Exercise k solved and every other exercise a stub: k's tests all pass. Everything a stub: every
    graded test fails, saying it is not implemented."""
    for k in ma.EXERCISES:
        ma.make(str(tmp_path / f"only{k}"), [j for j in ma.EXERCISES if j != k])
    with ThreadPoolExecutor(2) as pool:  # two pytest processes at a time, one thread each
        graded = pool.map(lambda k: grade.grade(str(tmp_path / f"only{k}"), [GRADED], only=k), ma.EXERCISES)
        for k, (rows, _) in zip(ma.EXERCISES, graded):
            (kk, score, most, passed, n, failure), = rows
            assert kk == k and passed == n > 0 and score == most, f"exercise {k} alone: {passed}/{n}: {failure}"
    rows, _ = grade.grade(str(tmp_path / "only1"), [GRADED])
    assert [r[0] for r in rows if r[3] == r[4]] == [1]
    assert all("not implemented yet" in r[5] for r in rows if r[0] != 1)


def test_every_mutant_fails_its_exercise_and_the_solution_passes(capsys):
    mutants.main([])  # raises if a mutant passes its exercise's tests
    table = capsys.readouterr().out
    assert table.count("\n| ") == len(mutants.MUTANTS)  # a row per mutant below the header
    counts = {k: sum(m.exercise == k for m in mutants.MUTANTS) for k in ma.EXERCISES}
    assert min(counts.values()) >= 3, counts
    rows, results = grade.grade(ROOT, [GRADED, os.path.join(ROOT, "course", "hidden")])  # and the hidden tests
    assert all(r[3] == r[4] for r in rows) and results["score"] == 100
    assert sum(r[4] for r in rows) > sum(r[4] for r in grade.grade(ROOT, [GRADED])[0])  # the hidden ones ran


def test_grade_py_in_the_student_copy(stub_copy):
    p = subprocess.run([sys.executable, "grade.py", "--json", "out.json"], cwd=stub_copy, capture_output=True,
                       text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 1, p.stdout + p.stderr
    lines = p.stdout.split("\n")
    assert lines[0].split()[:3] == ["exercise", "points", "tests"] and "0.0 / 100" in p.stdout
    assert sum("not implemented yet" in ln for ln in lines) == len(ma.EXERCISES)
    results = json.load(open(stub_copy / "out.json"))
    assert results["score"] == 0 and results["tests"]
    for t in results["tests"]:
        assert set(t) >= {"name", "score", "max_score", "status", "output"} and t["status"] == "failed"
    assert sum(t["max_score"] for t in results["tests"]) == pytest.approx(100)
    for bad in (["--submission", "nowhere"], ["--json", "no/such/folder/r.json"], ["--exercise", "9"]):
        p = subprocess.run([sys.executable, "grade.py", *bad], cwd=stub_copy, capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "error:" in p.stderr and "Traceback" not in p.stderr, (bad, p.stderr)
    assert not (stub_copy / "no").exists()
    with pytest.raises(SystemExit, match="not a file in an existing folder"):
        mutants.main(["--out", str(stub_copy / "no" / "m.md")])

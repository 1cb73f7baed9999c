"""Grade the exercises: run each exercise's tests, print a table of points, write Gradescope's results.json.

    python grade.py                    # every exercise of this copy
    python grade.py --exercise 3       # one exercise (any order: each exercise's tests need no other exercise)

Exercise k's tests are the files test_exercise<k>*.py in the test folders (graded/ beside this script; an
instructor adds a folder of hidden tests with --tests). Its points are shared equally by its tests. The
output file follows Gradescope's autograder format ({"score", "tests": [{"name", "score", "max_score",
"status", "output"}]}); on Gradescope write it to /autograder/results/results.json.
For an instructor, grading a student's copy with the repository's own tests and the hidden ones:
    python course/grade.py --submission ../student-copy --tests course/graded course/hidden
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

# points per exercise (100 in all), the one place they are set
POINTS = {1: 15, 2: 5, 3: 10, 4: 15, 5: 15, 6: 10, 7: 10, 8: 20}
HERE = os.path.dirname(os.path.abspath(__file__))
FILE = re.compile(r"test_exercise(\d+)")
TIMEOUT = 900


def test_files(folders, only=None) -> dict:
    """{exercise: [test files]} in the folders."""
    found = {}
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "test_exercise*.py"))):
            k = int(FILE.search(os.path.basename(path))[1])
            if k in POINTS and (only is None or k == only):
                found.setdefault(k, []).append(os.path.abspath(path))
    return found


def first_line(text: str, width: int = 110) -> str:
    """A failure message in one line: the last 'E ...' line of a traceback, or its first line."""
    lines = [ln.strip() for ln in (text or "").split("\n") if ln.strip()]
    errors = [ln[1:].strip() for ln in lines if ln.startswith("E ")]
    line = errors[0] if errors else (lines[0] if lines else "failed")
    return line if len(line) <= width else line[:width - 3] + "..."


def run_tests(submission: str, files: list) -> list:
    """[(exercise, test name, passed, message)] of pytest over the files, run in the submission's folder."""
    with tempfile.TemporaryDirectory() as tmp:
        xml, ini = os.path.join(tmp, "junit.xml"), os.path.join(tmp, "pytest.ini")
        with open(ini, "w") as f:  # the submission's modules come first, whichever folder the tests are in
            f.write(f"[pytest]\npythonpath = {os.path.abspath(submission)}\n")
        # and for any process a test starts; small tests, one thread each
        env = {**os.environ, "PYTHONPATH": os.path.abspath(submission), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", ini, "--rootdir", submission,
               "-o", "junit_family=xunit1", f"--junitxml={xml}", *files]  # xunit1: each test names its file
        subprocess.run(cmd, cwd=submission, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        if not os.path.exists(xml):
            raise RuntimeError("pytest wrote no report (is pytest installed? pip install -r requirements-dev.txt)")
        results = []
        for case in ET.parse(xml).getroot().iter("testcase"):
            where = f"{case.get('file', '')} {case.get('classname', '')}.{case.get('name', '')}"
            k = FILE.search(where)
            if not k or case.find("skipped") is not None:
                continue
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            message = "" if bad is None else first_line(bad.get("message", "") or bad.text)
            if bad is not None and re.search(r"NotImplementedError\W+Exercise", bad.text or ""):
                message = "not implemented yet (NotImplementedError)"
            name = case.get("name")
            results.append((int(k[1]), name if len(name) <= 50 else name[:47] + "...", bad is None, message))
    return results


def grade(submission: str, folders: list, only=None):
    """(rows of the table, Gradescope's results dictionary)."""
    files = test_files(folders, only)
    if not files:
        raise ValueError(f"no test_exercise*.py files in {', '.join(folders)}"
                         + (f" for exercise {only}" if only else ""))
    results = run_tests(submission, [f for k in sorted(files) for f in files[k]])
    rows, tests = [], []
    for k in sorted(files):
        mine = [r for r in results if r[0] == k]
        passed = sum(r[2] for r in mine)
        share = POINTS[k] / len(mine) if mine else 0.0
        score = share * passed
        failure = next((f"{name}: {msg}" for _, name, ok, msg in mine if not ok),
                       "" if mine else "no test ran (a file that does not import?)")
        rows.append((k, score, POINTS[k], passed, len(mine), failure))
        tests += [{"name": f"Exercise {k}: {name}", "score": share if ok else 0.0,
                   "max_score": share, "status": "passed" if ok else "failed", "output": msg}
                  for _, name, ok, msg in mine]
        if not mine:
            tests.append({"name": f"Exercise {k}", "score": 0.0, "max_score": POINTS[k], "status": "failed",
                          "output": failure})
    total, most = sum(r[1] for r in rows), sum(r[2] for r in rows)
    return rows, {"score": total, "output": f"{total:.1f} / {most} points", "tests": tests}


def table(rows) -> str:
    lines = [f"{'exercise':<9} {'points':>11}  {'tests':<13} first failure"]
    for k, score, most, passed, n, failure in rows:
        status = f"{passed}/{n} passed"
        lines.append(f"{k:<9} {score:>5.1f} / {most:<3}  {status:<13} {failure}")
    lines.append(f"{'total':<9} {sum(r[1] for r in rows):>5.1f} / {sum(r[2] for r in rows):<3}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description="Grade the exercises: a table of points and Gradescope's results.json.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--exercise", type=int, choices=sorted(POINTS), help="grade one exercise only")
    p.add_argument("--submission", default=None, help="the folder of the code to grade (default: this script's)")
    p.add_argument("--tests", nargs="+", default=None,
                   help="folders of test_exercise<k>*.py files (default: graded/ beside this script)")
    p.add_argument("--json", default="results.json", help="where to write Gradescope's results.json")
    args = p.parse_args(argv)
    submission = os.path.abspath(args.submission or (HERE if os.path.isdir(os.path.join(HERE, "graded"))
                                                     and os.path.exists(os.path.join(HERE, "schedules.py"))
                                                     else os.path.dirname(HERE)))
    folders = args.tests or [os.path.join(HERE, "graded")]
    for folder in [submission, *folders]:
        if not os.path.isdir(folder):
            sys.exit(f"error: {folder} is not a folder")
    if not os.path.exists(os.path.join(submission, "schedules.py")):
        sys.exit(f"error: {submission} holds no schedules.py: --submission names the copy to grade")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.json))) or os.path.isdir(args.json):
        sys.exit(f"error: --json {args.json}: not a file in an existing folder")
    try:
        rows, results = grade(submission, folders, args.exercise)
    except (ValueError, RuntimeError) as e:
        sys.exit(f"error: {e}")
    except subprocess.TimeoutExpired:
        sys.exit(f"error: the tests ran past {TIMEOUT} s (an endless loop?); nothing graded")
    print(table(rows))
    with open(args.json + ".partial", "w") as f:  # whole or not at all
        json.dump(results, f, indent=1)
    os.replace(args.json + ".partial", args.json)
    print(f"wrote {args.json}")
    return 0 if all(r[3] == r[4] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

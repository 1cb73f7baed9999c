"""Cut a course assignment out of this repository: a student copy whose key functions are exercises,
graded by the repo's own tests.

The solution is this repository. Each exercise is a block of its code between two comment lines,
    # BEGIN EXERCISE k
    ...the solution...
    # END EXERCISE k
(a reader who ignores them reads the code as it is). The student copy replaces each chosen block by
    # Exercise k: <what> -- <equation>. Hint: <hint>
    raise NotImplementedError("Exercise k: <what> ...")
drops the markers of the exercises not chosen, and puts a student page in front of README.md.
Tests marked @pytest.mark.exercise<k> grade exercise k (pytest -m exercise3), and every one of them
fails with a message naming its exercise while the exercise is a stub. Where it could be done, a test
does not need an earlier exercise (the DDIM tests bring their own schedule); DDIM inversion (6) is
made of DDIM steps (5), so its tests need both.

    python -m tools.make_assignment --out ../hw-dae                  # all eight exercises
    python -m tools.make_assignment --out ../hw-dae --exercises 1,5,8
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository, above tools/
BEGIN = re.compile(r"^(\s*)# BEGIN EXERCISE (\d+)\s*$")
END = re.compile(r"^\s*# END EXERCISE (\d+)\s*$")


@dataclass
class Exercise:
    file: str
    what: str
    equation: str
    hint: str


EXERCISES = {
    1: Exercise("schedules.py", "alpha_t and sigma_t of the shifted-cosine schedule SC-S (Schedule.alpha_sigma)",
                "Khungurn et al. 2025 §3: logsnr(t) = -2 ln tan(pi t / 2) + 2 ln S, alpha^2 + sigma^2 = 1",
                "alpha^2 = sigmoid(logsnr); write it without tan so that alpha(1) is exactly 0 and nothing is NaN"),
    2: Exercise("schedules.py", "the v-prediction target of a variance-preserving schedule (make_target)",
                "Salimans & Ho 2022: v = alpha eps - sigma x_0", "alpha and sigma are already broadcast to x_0's shape"),
    3: Exercise("schedules.py", "x0_hat and eps_hat from a v-prediction (to_x0_eps)",
                "invert v = alpha eps - sigma x_0 and x_t = alpha x_0 + sigma eps, using alpha^2 + sigma^2 = 1",
                "no division is needed"),
    4: Exercise("dae.py", "the two-phase draw of t and the forward process (DiffusionAutoencoder.loss)",
                "Khungurn et al. 2025 §3: phase 1 trains at t = 1; x_t = alpha_t y_0 + sigma_t eps, y_0 = gamma x_0",
                "t and eps are drawn above it; set t = 1 for the first n_phase1 examples, then define alpha, sigma, "
                "y0 and x_t"),
    5: Exercise("sample.py", "one deterministic DDIM step from t to s (ddim_step)",
                "Song et al. 2021 eq. 12 with eta = 0: x_s = alpha_s x0_hat + sigma_s eps_hat",
                "model.predict gives (x0_hat, eps_hat); with clip, clamp x0_hat and recompute eps_hat from it"),
    6: Exercise("sample.py", "DDIM inversion (ddim_encode)", "Song et al. 2021 §4.3: the DDIM steps run from t = 0 to 1",
                "walk the decoding grid backwards with ddim_step"),
    7: Exercise("sample.py", "spherical interpolation of two noise tensors (slerp)",
                "DiffAE §4: slerp(a, b; w) = [sin((1 - w) theta) a + sin(w theta) b] / sin(theta), theta = angle(a, b)",
                "per example over the flattened tensors; fall back to lerp when theta is tiny"),
    8: Exercise("eval.py", "SSIM of two uint8 image batches (ssim)",
                "Wang et al. 2004: (2 mu_x mu_y + C1)(2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2))",
                "local statistics with gaussian_window() as a separable filter per channel, valid positions only"),
}


def blocks(text: str, path: str) -> list:
    """[(k, first line, last line, indent)] of a file's exercise blocks (0-based, markers included)."""
    found, open_block = [], None
    for i, line in enumerate(text.split("\n")):
        if m := BEGIN.match(line):
            if open_block:
                raise ValueError(f"{path}:{i + 1}: exercise {m[2]} begins inside exercise {open_block[0]}")
            open_block = (int(m[2]), i, m[1])
        elif m := END.match(line):
            if not open_block or int(m[1]) != open_block[0]:
                raise ValueError(f"{path}:{i + 1}: END EXERCISE {m[1]} without its BEGIN")
            found.append((open_block[0], open_block[1], i, open_block[2]))
            open_block = None
    if open_block:
        raise ValueError(f"{path}: exercise {open_block[0]} never ends")
    return found


def student_version(text: str, path: str, chosen: set) -> str:
    """The file with the chosen exercises' blocks replaced by stubs and every marker removed."""
    lines = text.split("\n")
    out, last = [], 0
    for k, first, end, indent in blocks(text, path):
        out += lines[last:first]
        if k in chosen:
            e = EXERCISES[k]
            out += [f"{indent}# Exercise {k}: {e.what} -- {e.equation}. Hint: {e.hint}.",
                    f'{indent}raise NotImplementedError("Exercise {k}: {e.what} (pytest -m exercise{k} checks it)")']
        else:
            out += lines[first + 1:end]
        last = end + 1
    return "\n".join(out + lines[last:])


def repo_files() -> list:
    """The repository's files: git's list where there is one, else every file but run outputs and caches."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        files = [f for f in listed.decode().split("\0") if f]
        if files:
            return [f for f in files if os.path.exists(os.path.join(ROOT, f))]
    except (OSError, subprocess.CalledProcessError):
        pass
    skip = {".git", ".venv", "runs", "data", "__pycache__", ".pytest_cache", ".ruff_cache"}
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip]
        files += [os.path.relpath(os.path.join(folder, f), ROOT) for f in names]
    return files


def student_page(chosen: list) -> str:
    rows = "\n".join(f"| {k} | `{EXERCISES[k].file}` | {EXERCISES[k].what} | {EXERCISES[k].equation} |"
                     f" `pytest -m exercise{k}` |" for k in chosen)
    return f"""# Assignment: diffusion autoencoders

This is a working repository with {len(chosen)} function bodies cut out. Each one raises
`NotImplementedError("Exercise k: ...")` where its code belongs; the comment above it says what to
compute and gives a hint. Implement them in order (later ones mostly do not need earlier ones), and
check each with its tests:

| # | file | what | equation | check |
|---|---|---|---|---|
{rows}

`pytest -m exercises` runs the tests of every exercise; a test of an unfinished exercise fails with
a message naming it. When all pass, the whole suite (`python -m pytest`) should pass too.

**Stretch:** train the CPU preset with your code (`python train.py --preset cpu --data DATA --out runs/mine`,
~15 minutes on a laptop) and evaluate it (`python eval.py --ckpt runs/mine/ckpt.pt --data DATA --split heldout
--n 1000 --steps 50 --json mine.json`); compare its held-out PSNR with the reference in the README below
(the `4-sc4-v-2phase` row of the ablation table).

The repository's own README follows.

---

"""


def make(out: str, chosen: list) -> None:
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ValueError(f"--out {out} exists and is not an empty folder: choose a new one")
    found = {}
    sources = {}
    for f in sorted({e.file for e in EXERCISES.values()}):
        text = open(os.path.join(ROOT, f)).read()
        sources[f] = text
        for k, *_ in blocks(text, f):
            found.setdefault(k, set()).add(f)
    for k, e in EXERCISES.items():
        if found.get(k) != {e.file}:
            raise ValueError(f"exercise {k} should be marked in {e.file}, found in {sorted(found.get(k, []))}")
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    # a new folder of our own beside --out (never a name a user's folder could have), renamed at the end
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out))}-partial-", dir=parent)
    for f in repo_files():
        dest = os.path.join(staging, f)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if f in sources:
            with open(dest, "w") as fh:
                fh.write(student_version(sources[f], f, set(chosen)))
        elif f == "README.md":
            with open(dest, "w") as fh:
                fh.write(student_page(chosen) + open(os.path.join(ROOT, f)).read())
        elif f != "tools/make_assignment.py" and f != "tests/test_assignment.py":  # the solution's tools stay home
            shutil.copy2(os.path.join(ROOT, f), dest)
    os.chmod(staging, 0o755)  # mkdtemp's folder is private
    if os.path.isdir(out):
        os.rmdir(out)  # empty, checked above
    os.replace(staging, out)


def exercise_list(s: str) -> list:
    try:
        ks = sorted({int(v) for v in s.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated exercise numbers, got {s!r}") from None
    unknown = [k for k in ks if k not in EXERCISES]
    if unknown:
        raise argparse.ArgumentTypeError(f"no exercise {unknown[0]}: choose from {', '.join(map(str, EXERCISES))}")
    return ks


def main(argv=None):
    p = argparse.ArgumentParser(description="Write a student copy of this repository with exercises to implement.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="a new folder for the student copy")
    p.add_argument("--exercises", type=exercise_list, default=list(EXERCISES),
                   help="which exercises to cut out (comma-separated; '' cuts none): "
                        + "; ".join(f"{k} {e.what}" for k, e in EXERCISES.items()))
    args = p.parse_args(argv)
    try:
        make(args.out, args.exercises)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote the student copy to {args.out} with exercises {', '.join(map(str, args.exercises)) or 'none'}; "
          f"grade with: cd {args.out} && python -m pytest -m exercises")


if __name__ == "__main__":
    main()

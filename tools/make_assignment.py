"""Cut a course assignment out of this repository: a student copy whose key functions are exercises,
graded with points by course/grade.py.

The solution is this repository. Each exercise is one or more blocks of its code between two comment lines,
    # BEGIN EXERCISE k
    ...the solution...
    # END EXERCISE k
(a reader who ignores them reads the code as it is). The student copy replaces each chosen block by
    # Exercise k: <what> -- <equation>. Hint: <hint>
    raise NotImplementedError("Exercise k: <what> ...")
and drops the markers of the exercises not chosen. Its README is the student page alone; it holds
grade.py and graded/test_exercise<k>.py (course/graded: each exercise's tests need no other exercise),
and none of the instructors' files (this script, course/'s answers, hidden tests and mutants, TEACHING.md,
the CI script). The copy is refused, and nothing written, if any solution is found in any of its files
(course/leaks.py), names renamed or not.

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

from course import leaks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository, above tools/
BEGIN = re.compile(r"^(\s*)# BEGIN EXERCISE (\d+)\s*$")
END = re.compile(r"^\s*# END EXERCISE (\d+)\s*$")


@dataclass
class Exercise:
    file: str
    what: str
    equation: str
    hint: str
    minutes: int = 20
    questions: tuple = ()


EXERCISES = {
    1: Exercise("schedules.py", "alpha_t and sigma_t of the shifted-cosine schedule SC-S (Schedule.alpha_sigma)",
                "Khungurn et al. 2025 §3: logsnr(t) = -2 ln tan(pi t / 2) + 2 ln S, alpha^2 + sigma^2 = 1",
                "alpha^2 = sigmoid(logsnr); write it without tan so that alpha(1) is exactly 0 and nothing is NaN", 30,
                ("What does a shift S > 1 do to the log-SNR at every t, and why does that suit the paper's phase 2?",
                 "Why must alpha(1) be exactly 0 for phase 1?")),
    2: Exercise("schedules.py", "the v-prediction target of a variance-preserving schedule (make_target)",
                "Salimans & Ho 2022: v = alpha eps - sigma x_0", "alpha and sigma are already broadcast to x_0's shape", 10,
                ("What is v at t = 1, and why can an eps-predicting network not learn phase 1 (t = 1 only)?",)),
    3: Exercise("schedules.py", "x0_hat and eps_hat from a v-prediction (to_x0_eps)",
                "invert v = alpha eps - sigma x_0 and x_t = alpha x_0 + sigma eps, using alpha^2 + sigma^2 = 1",
                "no division is needed", 20,
                ("eps-prediction divides by alpha to get x0_hat; what goes wrong near t = 1, where SC-4 puts "
                 "many of its steps, and why does v avoid it?",)),
    4: Exercise("dae.py", "the two-phase draw of t and the forward process (DiffusionAutoencoder.loss, .diffuse)",
                "Khungurn et al. 2025 §3: phase 1 trains at t = 1; x_t = alpha_t y_0 + sigma_t eps, y_0 = gamma x_0",
                "in loss: t and eps are drawn above; set t = 1 for the first n_phase1 examples and define y0. In "
                "diffuse: alpha and sigma are computed above; return x_t", 25,
                ("In phase 1 x_t is pure noise: where must the decoder get the image from, and what does that "
                 "do to the latent z?", "Which examples of the batch that straddles the phase switch are in "
                 "phase 1?")),
    5: Exercise("sample.py", "one deterministic DDIM step from t to s (ddim_step)",
                "Song et al. 2021 eq. 12 with eta = 0: x_s = alpha_s x0_hat + sigma_s eps_hat",
                "model.predict gives (x0_hat, eps_hat); with clip, clamp x0_hat and recompute eps_hat from it", 25,
                ("Why recompute eps_hat after clamping x0_hat, instead of keeping the network's?",)),
    6: Exercise("sample.py", "DDIM inversion (ddim_encode)", "Song et al. 2021 §4.3: the DDIM steps run from t = 0 to 1",
                "walk the decoding grid backwards with ddim_step", 15,
                ("Why do reconstructions from inverted x_T score a higher PSNR than from random x_T, and why does "
                 "that flatter the model?",)),
    7: Exercise("sample.py", "spherical interpolation of two noise tensors (slerp)",
                "DiffAE §4: slerp(a, b; w) = [sin((1 - w) theta) a + sin(w theta) b] / sin(theta), theta = angle(a, b)",
                "per example over the flattened tensors; fall back to lerp when theta is tiny", 20,
                ("What is the norm of lerp(a, b; 0.5) for two independent Gaussian noise tensors, and why does "
                 "the decoder care?",)),
    8: Exercise("eval.py", "SSIM of two image batches (ssim)",
                "Wang et al. 2004: (2 mu_x mu_y + C1)(2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2))",
                "local statistics with gaussian_window() as a separable filter per channel; padding 0 keeps valid "
                "positions only, padding p zero-pads the image by p", 40,
                ("On 32 x 32 images, how many positions does the valid-only SSIM average over, and why does "
                 "the zero-padded convention (DiffAE's) read higher on a blurred image?",)),
}
# what a student copy leaves out: the instructors' files
INSTRUCTOR_ONLY = ("tools/make_assignment.py", "tests/test_assignment.py", "TEACHING.md")
INSTRUCTOR_FOLDERS = ("course/", ".ci/", "results/course/")
STRETCH_DB, STRETCH_TOLERANCE = 27.49, 0.5  # results/speed/b16m124g8tx-92k-p4.json, psnr_diffae at 10 steps


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


def solution_blocks() -> dict:
    """{exercise: [the text inside each of its blocks]} of this repository; refuses misplaced markers."""
    found = {}
    for f in sorted({e.file for e in EXERCISES.values()}):
        lines = open(os.path.join(ROOT, f)).read().split("\n")
        for k, first, last, _ in blocks("\n".join(lines), f):
            found.setdefault(k, {}).setdefault(f, []).append("\n".join(lines[first + 1:last]))
    for k, e in EXERCISES.items():
        if set(found.get(k, {})) != {e.file}:
            raise ValueError(f"exercise {k} should be marked in {e.file}, found in {sorted(found.get(k, {}))}")
    return {k: found[k][EXERCISES[k].file] for k in EXERCISES}


def student_version(text: str, path: str, chosen: set) -> str:
    """The file with the chosen exercises' blocks replaced by stubs and every marker removed."""
    lines = text.split("\n")
    out, last = [], 0
    for k, first, end, indent in blocks(text, path):
        out += lines[last:first]
        if k in chosen:
            e = EXERCISES[k]
            out += [f"{indent}# Exercise {k}: {e.what} -- {e.equation}. Hint: {e.hint}.",
                    f'{indent}raise NotImplementedError("Exercise {k}: {e.what} (python grade.py --exercise {k} checks it)")']
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
    rows = "\n".join(f"| {k} | `{EXERCISES[k].file}` | {EXERCISES[k].what} | {EXERCISES[k].minutes} min |"
                     f" `python grade.py --exercise {k}` |" for k in chosen)
    parts = []
    for k in chosen:
        e = EXERCISES[k]
        questions = "\n".join(f"- {q}" for q in e.questions)
        parts.append(f"### Exercise {k}: {e.what}\n\nIn `{e.file}`. Implement: {e.equation}.\n"
                     f"Hint: {e.hint}.\nCheck it: `python grade.py --exercise {k}` (its tests are "
                     f"`graded/test_exercise{k}.py`).\n\nQuestions to answer in your own words:\n{questions}\n")
    sections = "\n".join(parts)
    return f"""# Assignment: diffusion autoencoders

This is a working PyTorch repository of a diffusion autoencoder (Khungurn et al. 2025, "Revisiting
Diffusion Autoencoder Training for Image Reconstruction Quality": an encoder gives a latent z, a UNet
decoder trained as a diffusion model reconstructs the image from z) with {len(chosen)} function bodies
cut out. Each one raises `NotImplementedError("Exercise k: ...")` where its code belongs; the comment
above it says what to compute and gives a hint. The times are our rough guesses for a student who has
read the paper's section.

## Setup

```bash
python3 -m venv .venv && . .venv/bin/activate
pip install -r requirements.txt -r requirements-dev.txt
python grade.py            # every exercise: a table of points, and results.json
```

## The exercises

| # | file | what | time | check |
|---|---|---|---|---|
{rows}

Each exercise's tests need none of the others, so work in any order and watch each one turn green.
`python grade.py` prints, per exercise, the points earned, the tests passed and the first failure in one
line, and writes `results.json` (Gradescope's format). Your instructor may grade with more tests than
these. When every exercise passes, the repository's own suite (`python -m pytest`) should pass too.

{sections}
## Stretch goal: train with your own code

Train README's CPU run in fp32 (so that the comparison holds on any CPU; 11 minutes on a 2-core AMD
Zen 4, longer on older CPUs) and evaluate it on the 1,000 held-out images, as the reference run did:

```bash
python train.py --preset cpu --recipe small --phase1-frac 0.4 --precision fp32 --data DATA --out runs/mine
python eval.py --ckpt runs/mine/ckpt.pt --data DATA --split heldout --n 1000 --steps 10 --json runs/mine/eval.json
python sample.py --ckpt runs/mine/ckpt.pt --data DATA --steps 10    # grids of reconstructions, to look at
```

DATA is the CIFAR-10 training images (`cifar10` downloads them; a folder of images also works). The
reference reached `psnr_diffae` = {STRETCH_DB:.2f} dB (`results/speed/b16m124g8tx-92k-p4.json`); yours should land
within ±{STRETCH_TOLERANCE} dB of it. The tolerance is a judgement, not a measured spread: one seed was run,
and training on another CPU rounds differently, which acts like another seed. Far below it, one of
your exercises is wrong in a way the tests did not catch: look at the grids.
"""


def set_aside_name(out: str) -> str:
    """The first free <out>.replaced-<n>: where --overwrite moves a folder that is in the way."""
    n = 1
    while os.path.lexists(f"{out.rstrip(os.sep)}.replaced-{n}"):
        n += 1
    return f"{out.rstrip(os.sep)}.replaced-{n}"


def make(out: str, chosen: list, overwrite: bool = False) -> str:
    """Write the student copy to out; with overwrite, a non-empty folder already there is moved aside, whole
    and never deleted, once the new copy is complete. Returns where it was moved ('' if nowhere)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file: choose a folder")
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise ValueError(f"--out {out} exists and is not an empty folder: choose a new one, or pass --overwrite "
                         f"to move it aside (to {set_aside_name(out)}; nothing is deleted)")
    solutions = solution_blocks()
    sources = {f: open(os.path.join(ROOT, f)).read() for f in {e.file for e in EXERCISES.values()}}
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    # a new folder of our own beside --out (never a name a user's folder could have), renamed at the end
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out))}-partial-", dir=parent)
    try:
        for f in repo_files():
            if f in INSTRUCTOR_ONLY or f.startswith(INSTRUCTOR_FOLDERS):
                continue
            dest = os.path.join(staging, f)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if f in sources:
                with open(dest, "w") as fh:
                    fh.write(student_version(sources[f], f, set(chosen)))
            elif f == "README.md":
                with open(dest, "w") as fh:
                    fh.write(student_page(chosen))
            else:
                shutil.copy2(os.path.join(ROOT, f), dest)
        shutil.copy2(os.path.join(ROOT, "course", "grade.py"), os.path.join(staging, "grade.py"))
        os.makedirs(os.path.join(staging, "graded"))
        for k in chosen:
            shutil.copy2(os.path.join(ROOT, "course", "graded", f"test_exercise{k}.py"), os.path.join(staging, "graded"))
        hits = leaks.find({k: solutions[k] for k in chosen}, staging)
        if hits:
            k, where, what = hits[0]
            raise ValueError(f"exercise {k}'s solution is in the student copy's {where} ({what}; "
                             f"{len(hits)} finding(s) in all): no copy written")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.chmod(staging, 0o755)  # mkdtemp's folder is private
    aside = ""
    if os.path.isdir(out) and os.listdir(out):
        aside = set_aside_name(out)
        os.rename(out, aside)  # kept whole, as it was
    elif os.path.isdir(out):
        os.rmdir(out)  # empty
    os.replace(staging, out)
    return aside


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
    p.add_argument("--overwrite", action="store_true",
                   help="--out may hold something: it is moved aside to <out>.replaced-<n> (never deleted) once "
                        "the new copy is complete")
    p.add_argument("--exercises", type=exercise_list, default=list(EXERCISES),
                   help="which exercises to cut out (comma-separated; '' cuts none): "
                        + "; ".join(f"{k} {e.what}" for k, e in EXERCISES.items()))
    args = p.parse_args(argv)
    try:
        aside = make(args.out, args.exercises, args.overwrite)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    if aside:
        print(f"moved what was in {args.out} to {aside} (nothing deleted)")
    print(f"wrote the student copy to {args.out} with exercises {', '.join(map(str, args.exercises)) or 'none'}; "
          f"grade with: cd {args.out} && python grade.py")


if __name__ == "__main__":
    main()

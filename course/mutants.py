"""Plausible wrong solutions of each exercise, to test the grader (tests/test_assignment.py): every mutant
must fail its exercise's graded tests (course/graded/test_exercise<k>.py) while the solution passes them.

A mutant replaces one piece of an exercise's solution block (`old`, found exactly once inside the blocks
of exercise k) by a mistake a student could make (`new`).
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    exercise: int
    name: str
    old: str
    new: str


MUTANTS = [
    # 1: SC-S alpha and sigma
    Mutant(1, "alpha and sigma swapped", "return self.shift * c / norm, s / norm", "return s / norm, self.shift * c / norm"),
    Mutant(1, "the shift ignored (plain cosine)", "norm = torch.sqrt((self.shift * c) ** 2 + s ** 2)\n"
           "        return self.shift * c / norm, s / norm", "norm = torch.sqrt(c ** 2 + s ** 2)\n"
           "        return c / norm, s / norm"),
    Mutant(1, "alpha_bar and 1 - alpha_bar returned, not their roots", "return self.shift * c / norm, s / norm",
           "return (self.shift * c / norm) ** 2, (s / norm) ** 2"),
    Mutant(1, "the shift on the wrong side (SC-1/S)", "norm = torch.sqrt((self.shift * c) ** 2 + s ** 2)\n"
           "        return self.shift * c / norm, s / norm", "norm = torch.sqrt(c ** 2 + (self.shift * s) ** 2)\n"
           "        return c / norm, self.shift * s / norm"),
    Mutant(1, "through tan: alpha(1) is 1e-16, not 0", "return self.shift * c / norm, s / norm",
           "tan2 = torch.tan(0.5 * math.pi * t) ** 2\n"
           "        return torch.sqrt(1 / (1 + tan2 / self.shift ** 2)), torch.sqrt(1 - 1 / (1 + tan2 / self.shift ** 2))"),
    # 2: the v target
    Mutant(2, "sign flipped", "return alpha * eps - sigma * x0", "return sigma * x0 - alpha * eps"),
    Mutant(2, "alpha and sigma swapped", "return alpha * eps - sigma * x0", "return sigma * eps - alpha * x0"),
    Mutant(2, "the rectified-flow velocity", "return alpha * eps - sigma * x0", "return eps - x0"),
    Mutant(2, "sigma forgotten", "return alpha * eps - sigma * x0", "return alpha * eps - x0"),
    # 3: x0_hat and eps_hat from v
    Mutant(3, "sign error in x0_hat", "x0_hat = alpha * x_t - sigma * out", "x0_hat = alpha * x_t + sigma * out"),
    Mutant(3, "alpha and sigma swapped", "x0_hat = alpha * x_t - sigma * out\n        eps_hat = sigma * x_t + alpha * out",
           "x0_hat = sigma * x_t - alpha * out\n        eps_hat = alpha * x_t + sigma * out"),
    Mutant(3, "sign error in eps_hat", "eps_hat = sigma * x_t + alpha * out", "eps_hat = sigma * x_t - alpha * out"),
    Mutant(3, "x0_hat and eps_hat exchanged", "x0_hat = alpha * x_t - sigma * out\n        eps_hat = sigma * x_t + alpha * out",
           "eps_hat = alpha * x_t - sigma * out\n        x0_hat = sigma * x_t + alpha * out"),
    # 4: the two-phase t and the forward process
    Mutant(4, "x_t = alpha y_0 + (1 - alpha) eps", "return alpha * y0 + sigma * eps", "return alpha * y0 + (1 - alpha) * eps"),
    Mutant(4, "phase 1 at t = 0", "t[:n_phase1] = 1.0", "t[:n_phase1] = 0.0"),
    Mutant(4, "off by one: one example too many in phase 1", "t[:n_phase1] = 1.0", "t[:n_phase1 + 1] = 1.0"),
    Mutant(4, "phase 1 is the batch's last examples", "t[:n_phase1] = 1.0", "t[len(t) - n_phase1:] = 1.0"),
    Mutant(4, "gamma forgotten", "y0 = self.to_diffusion(x0)", "y0 = x0"),
    Mutant(4, "alpha_bar for alpha", "return alpha * y0 + sigma * eps", "return alpha ** 2 * y0 + sigma ** 2 * eps"),
    # 5: one DDIM step
    Mutant(5, "the clip forgotten", "if clip:\n", "if False:\n"),
    Mutant(5, "eps_hat not recomputed after the clip", "            eps_hat = (x - alpha_t * x0_hat) / sigma_t",
           "            pass"),
    Mutant(5, "alpha_t for alpha_s", "return alpha_s * x0_hat + sigma_s * eps_hat", "return alpha_t * x0_hat + sigma_s * eps_hat"),
    Mutant(5, "x0_hat and eps_hat exchanged", "return alpha_s * x0_hat + sigma_s * eps_hat",
           "return alpha_s * eps_hat + sigma_s * x0_hat"),
    Mutant(5, "the model asked at s", "torch.full((x.shape[0],), t, device=x.device)",
           "torch.full((x.shape[0],), s, device=x.device)"),
    # 6: DDIM inversion
    Mutant(6, "the grid not reversed (it decodes)", "    ts = ts.flip(0)\n", "    ts = ts\n"),
    Mutant(6, "each step's ends swapped", "x = ddim_step(model, x, z, s, t, clip)", "x = ddim_step(model, x, z, t, s, clip)"),
    Mutant(6, "off by one: the last step skipped", "zip(ts[:-1].tolist(), ts[1:].tolist())",
           "zip(ts[:-2].tolist(), ts[1:-1].tolist())"),
    Mutant(6, "the clip not passed on", "x = ddim_step(model, x, z, s, t, clip)", "x = ddim_step(model, x, z, s, t, 1.0)"),
    # 7: slerp
    Mutant(7, "lerp", "return torch.where(theta < 1e-4,", "return torch.where(theta < 1e4,"),
    Mutant(7, "the weights swapped", "(torch.sin((1 - w) * theta) * a + torch.sin(w * theta) * b) / sin",
           "(torch.sin(w * theta) * a + torch.sin((1 - w) * theta) * b) / sin"),
    Mutant(7, "no division by sin(theta)", "(torch.sin((1 - w) * theta) * a + torch.sin(w * theta) * b) / sin",
           "(torch.sin((1 - w) * theta) * a + torch.sin(w * theta) * b)"),
    Mutant(7, "one angle for the whole batch", "cos = (a_flat * b_flat).sum(1) / (a_flat.norm(dim=1) * b_flat.norm(dim=1))",
           "cos = ((a_flat * b_flat).sum() / (a_flat.norm() * b_flat.norm())).expand(a.shape[0])"),
    Mutant(7, "the angle from the dot product, not normalised",
           "cos = (a_flat * b_flat).sum(1) / (a_flat.norm(dim=1) * b_flat.norm(dim=1))", "cos = (a_flat * b_flat).sum(1)"),
    # 8: SSIM
    Mutant(8, "padding ignored", "F.conv2d(F.conv2d(u, kh, padding=(0, padding), groups=C), kv, padding=(padding, 0), groups=C)",
           "F.conv2d(F.conv2d(u, kh, groups=C), kv, groups=C)"),
    Mutant(8, "data range ignored (always 255)", "c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2",
           "c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2"),
    Mutant(8, "a box window", "g = gaussian_window()", "g = torch.full((11,), 1 / 11, dtype=torch.float64)"),
    Mutant(8, "standard deviations for variances", "var_x = blur(x * x) - mu_x ** 2\n    var_y = blur(y * y) - mu_y ** 2",
           "var_x = (blur(x * x) - mu_x ** 2).clamp_min(0).sqrt()\n    var_y = (blur(y * y) - mu_y ** 2).clamp_min(0).sqrt()"),
    Mutant(8, "C1 and C2 exchanged", "c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2",
           "c2, c1 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2"),
]


def apply(text: str, path: str, mutant: Mutant, blocks) -> str:
    """The file's text with the mutant's `old` replaced inside exercise k's blocks (blocks: make_assignment's)."""
    lines = text.split("\n")
    spans = [(first, last) for k, first, last, _ in blocks(text, path) if k == mutant.exercise]
    inside = [("\n".join(lines[first:last + 1]), first, last) for first, last in spans]
    where = [(block, first, last) for block, first, last in inside if mutant.old in block]
    if len(where) != 1 or where[0][0].count(mutant.old) != 1:
        raise ValueError(f"mutant {mutant.name!r}: its old text is not exactly once in exercise {mutant.exercise}")
    block, first, last = where[0]
    return "\n".join(lines[:first] + block.replace(mutant.old, mutant.new).split("\n") + lines[last + 1:])


def rounds() -> list:
    """The mutants in rounds of at most one per exercise (each exercise's tests need no other exercise, so a
    round's mutants are graded together)."""
    by_exercise = {}
    for m in MUTANTS:
        by_exercise.setdefault(m.exercise, []).append(m)
    return [[ms[r] for ms in by_exercise.values() if r < len(ms)] for r in range(max(map(len, by_exercise.values())))]


def main(argv=None):
    """Grade every mutant and print which tests catch it (the table in results/course/mutants.md)."""
    import argparse
    import os
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    from course import grade
    from tools import make_assignment as ma

    p = argparse.ArgumentParser(description="Grade every mutant with course/graded and print what catches it.")
    p.add_argument("--out", help="also write the table to this markdown file")
    args = p.parse_args(argv)
    if args.out and (not os.path.isdir(os.path.dirname(os.path.abspath(args.out))) or os.path.isdir(args.out)):
        raise SystemExit(f"error: --out {args.out}: not a file in an existing folder")
    lines = ["| exercise | mutant | tests failed | e.g. |", "|---|---|---|---|"]
    tests = [os.path.join(ma.ROOT, "course", "graded")]
    escaped = []

    def graded(group):
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "copy")
            ma.make(copy, [])
            for f in {ma.EXERCISES[m.exercise].file for m in group}:
                text = open(os.path.join(ma.ROOT, f)).read()
                for m in group:
                    if ma.EXERCISES[m.exercise].file == f:
                        text = apply(text, f, m, ma.blocks)
                with open(os.path.join(copy, f), "w") as fh:
                    fh.write(ma.student_version(text, f, set()))
            return grade.run_tests(copy, [t for k, fs in sorted(grade.test_files(tests).items()) for t in fs])

    with ThreadPoolExecutor(2) as pool:  # two rounds at a time
        done = list(pool.map(graded, rounds()))
    for group, results in zip(rounds(), done):
        for m in group:
            mine = [r for r in results if r[0] == m.exercise]
            failed = [name for _, name, ok, _ in mine if not ok]
            if not failed:
                escaped.append(m)
            lines.append(f"| {m.exercise} | {m.name} | {len(failed)} / {len(mine)} | {failed[0] if failed else '—'} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(table + "\n")
    if escaped:
        raise SystemExit(f"error: {len(escaped)} mutant(s) pass their exercise's tests: "
                         + "; ".join(f"{m.exercise}: {m.name}" for m in escaped))


if __name__ == "__main__":
    main()

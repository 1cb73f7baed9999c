"""Every command in the docs still runs as written: each names a script that exists, every flag it types
is one that script takes, and train.py's flag lists parse (flags.parse_args checks them as a run would)."""
import contextlib
import importlib
import io
import os
import re
import shlex

import pytest

from conftest import ROOT
from plumbing import flags

# (a student copy has README.md, the student page, and RESULTS.md; not TEACHING.md nor make_assignment)
DOCS = [d for d in ("README.md", "RESULTS.md", "TEACHING.md") if os.path.exists(os.path.join(ROOT, d))]
IN_REPO = os.path.exists(os.path.join(ROOT, "tools", "make_assignment.py"))


def commands(doc: str, text: str = None) -> list:
    """The python / torchrun / bash commands of a markdown file's bash blocks, one argv each."""
    text = open(os.path.join(ROOT, doc)).read() if text is None else text
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].split(" # ")[0]
            for part in line.split("&&"):
                argv = shlex.split(part)
                if argv and argv[0] in ("python", "python3", "torchrun", "bash"):
                    found.append(argv)
    return found


def script_of(argv: list):
    """(module name, its arguments) of a command, or (None, path) for a bash script."""
    if argv[0] == "bash":
        return None, argv[1]
    if argv[0] == "torchrun":
        at = next(i for i, a in enumerate(argv) if a.endswith(".py"))
        return argv[at][:-3], argv[at + 1:]
    if argv[1] == "-m":
        return argv[2], argv[3:]
    return STUDENT_COPY.get(argv[1], argv[1][:-3].replace("/", ".")), argv[2:]


# in the repository, a student copy's grade.py is course/grade.py, and its page make_assignment's student_page()
STUDENT_COPY = {"grade.py": "course.grade"} if IN_REPO else {}
ALL = [(doc, argv) for doc in DOCS for argv in commands(doc)]
if IN_REPO:
    from tools import make_assignment
    ALL += [("student page", argv) for argv in commands(None, make_assignment.student_page(list(make_assignment.EXERCISES)))]


def test_the_docs_have_commands_to_check():
    names = {script_of(argv)[0] for _, argv in ALL}
    assert {"train", "eval", "sample", "tools.experiments", "tools.figures"} <= names
    assert "tools.make_assignment" in names or not IN_REPO


HELP = {}


def help_text(module: str) -> str:
    """What `python -m module --help` prints."""
    if module not in HELP:
        mod = importlib.import_module(module)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            mod.main(["--help"])
        HELP[module] = out.getvalue()
    return HELP[module]


@pytest.mark.parametrize("doc,argv", ALL, ids=[f"{d}:{' '.join(a)[:60]}" for d, a in ALL])
def test_a_documented_command_names_a_script_and_flags_that_exist(doc, argv):
    module, args = script_of(argv)
    if module is None:
        assert os.path.isfile(os.path.join(ROOT, args)), f"{doc}: {args} does not exist"
        return
    if module in ("pytest", "pip", "venv", "torch.distributed.run"):
        return
    path = module.replace(".", "/") + ".py"
    assert os.path.isfile(os.path.join(ROOT, path)), f"{doc}: {' '.join(argv)}: no {path}"
    assert not argv[1].startswith("tools/"), f"{doc}: run a tool as python -m tools.<name>: {' '.join(argv)}"
    typed = [a for a in args if a.startswith("--")]
    text = help_text(module) if typed else ""
    for a in typed:
        assert re.search(rf"(^|\s){re.escape(a.split('=')[0])}\b", text), f"{doc}: {module} has no flag {a}"
    if module == "train":
        flags.parse_args([a for a in args if "$" not in a])  # raises ValueError on a bad combination


def test_readmes_cpu_run_is_the_run_its_numbers_come_from():
    """README quotes results/speed/b16m124g8tx-92k-p4.json for its CPU command: that run's flags (run2.sh,
    on top of the cpu-v1 preset) must be what README's command trains, apart from where and how fast."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme.split("## A run that finishes on a laptop CPU")[1].split("\n## ")[0]
    train = next(script_of(a)[1] for a in commands(None, section) if script_of(a)[0] == "train")
    script = open(os.path.join(ROOT, "results", "speed", "run2.sh")).read()
    run_flags = re.search(r"\[b16m124g8tx-92k-p4\]=\"([^\"]*)\"", script).group(1)
    run_flags = run_flags.replace("$B16", re.search(r'^B16="([^"]*)"', script, re.M).group(1))
    assert "$" not in run_flags
    measured = flags.plain_args(flags.parse_args(["--preset", "cpu-v1", "--recipe", "small", "--data", "d",
                                                 *shlex.split(run_flags)]))
    readme_run = flags.plain_args(flags.parse_args([*train, "--data", "d"]))
    for k in flags.RUN_FLAGS | {"data", "preset"}:
        measured.pop(k, None), readme_run.pop(k, None)
    assert readme_run == measured
    assert (readme_run["base_channels"], readme_run["norm_groups"], readme_run["phase1_frac"]) == (16, 8, 0.4)

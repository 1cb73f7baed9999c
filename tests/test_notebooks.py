"""The notebooks run top to bottom on the shipped models, and their committed outputs are from a run of the
notebooks as they are now (tools/run_notebooks.py stamps each with the hash of its code)."""
import glob
import os

import pytest

from conftest import ROOT

nbformat = pytest.importorskip("nbformat")
from tools.run_notebooks import execute, source_sha256  # noqa: E402

NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def test_there_are_notebooks_and_the_models_they_need():
    assert len(NOTEBOOKS) >= 2
    for name in ("small.pt", "small-phase1.pt", "small-latent.pt", "heldout.npz"):
        assert os.path.getsize(os.path.join(ROOT, "models", name)) > 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_committed_outputs_come_from_this_notebook(path):
    book = nbformat.read(path, as_version=4)
    assert book.metadata["repo"]["source_sha256"] == source_sha256(book), \
        f"{path} changed since its outputs were made: python -m tools.run_notebooks {os.path.relpath(path, ROOT)}"
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code) and any(o.get("output_type") == "display_data" for c in code
                                                          for o in c.outputs)  # it ran, and it draws


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_top_to_bottom(path):
    book = execute(path)  # raises on the first cell that fails
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors

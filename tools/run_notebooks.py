"""Run the notebooks top to bottom and keep their outputs, so that they render as pictures on a code host.

    python -m tools.run_notebooks                     # every notebooks/*.ipynb, in place
    python -m tools.run_notebooks notebooks/2-autoencoding.ipynb

Each runs in a fresh kernel from notebooks/ (nbclient, the kernel of this Python), and its metadata gets the
SHA-256 of its code cells: tests/test_notebooks.py checks that the committed outputs came from a run of the
notebook as it is now, and runs every notebook again.
"""
import argparse
import glob
import hashlib
import os
import re
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_sha256(book) -> str:
    """What a notebook computes: the SHA-256 of its code cells' sources, in order."""
    return hashlib.sha256("\n\0".join(c.source for c in book.cells if c.cell_type == "code").encode()).hexdigest()


def execute(path: str, timeout: int = 600):
    """The notebook at `path`, run in a fresh kernel from its own folder; raises CellExecutionError on an error."""
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}}).execute()
    return book


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paths", nargs="*", help="notebooks to run (default: every notebooks/*.ipynb)")
    args = p.parse_args(argv)
    paths = args.paths or sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
    for path in paths:
        t0 = time.time()
        try:
            book = execute(path)
        except (OSError, CellExecutionError) as e:
            last = re.sub("\x1b\\[[0-9;]*m", "", str(e)).strip().splitlines()[-1]  # without the terminal colours
            sys.exit(f"error: {path}: {last}")
        book.metadata["repo"] = {"source_sha256": source_sha256(book), "seconds": round(time.time() - t0, 1)}
        nbformat.write(book, path)
        print(f"{path}: ran in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()

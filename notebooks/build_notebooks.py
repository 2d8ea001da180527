"""Write the teaching notebooks from the cell sources below and execute them so outputs are embedded.

    python notebooks/build_notebooks.py            # all notebooks
    python notebooks/build_notebooks.py 02 03      # selected ones

Each notebook is a list of ("md" | "code", source) cells.  Keeping the sources here (instead of editing JSON)
makes diffs readable; tests/test_notebooks.py executes the committed .ipynb files in a fresh kernel.
"""

from __future__ import annotations

import os
import sys

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))


def build(name, cells, execute=True):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, src in cells:
        src = src.strip("\n")
        nb.cells.append(
            nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
        )
    path = os.path.join(HERE, name)
    if execute:
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": HERE}}
        ).execute()
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    import notebook_sources

    wanted = sys.argv[1:]
    for name, cells in sorted(notebook_sources.NOTEBOOKS.items()):
        if not wanted or any(name.startswith(w) for w in wanted):
            print("building", name)
            build(name, cells)

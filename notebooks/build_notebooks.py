"""Build the teaching notebooks from their jupytext "percent" sources and execute them.

    python notebooks/build_notebooks.py            # all notebooks
    python notebooks/build_notebooks.py 02 03      # the ones whose names start with 02, 03

Each ``NN_name.py`` next to this file is the source of ``NN_name.ipynb``: ``# %%`` starts a code cell,
``# %% [markdown]`` a Markdown cell whose lines are commented (``# text``, ``#`` for an empty line).
Comment lines before the first ``# %%`` (e.g. a ``# ruff: noqa`` directive) belong to no cell.  Leading and
trailing blank lines of a cell are dropped.  The notebook is executed in a fresh ``python3`` kernel with
``notebooks/`` as working directory, within a budget of ``BUDGET_S`` seconds for the whole notebook (the
nbclient timeout of each cell is what is left of it); tests/test_notebooks.py uses the same functions.
"""

from __future__ import annotations

import glob
import os
import re
import sys
import time

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
BUDGET_S = 90
_MARKER = re.compile(r"^# %%(?P<md> \[markdown\])?(?:\s.*)?$")


def sources() -> list[str]:
    """Paths of the notebook sources (``NN_*.py``), sorted."""
    return sorted(glob.glob(os.path.join(HERE, "[0-9][0-9]_*.py")))


def parse(text: str) -> list[tuple[str, str]]:
    """The cells of a percent-format source as ("markdown" | "code", source) pairs, in order."""
    cells: list[tuple[str, list[str]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        m = _MARKER.match(line)
        if m:
            cells.append(("markdown" if m["md"] else "code", []))
        elif not cells:
            if line.strip() and not line.startswith("#"):
                raise ValueError(f"line {number}: code before the first '# %%' marker")
        elif cells[-1][0] == "markdown" and line.strip():
            if not (line == "#" or line.startswith("# ")):
                raise ValueError(f"line {number}: a Markdown line must be '#' or start with '# '")
            cells[-1][1].append(line[2:])
        else:
            cells[-1][1].append(line)
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]


def build(path: str) -> nbformat.NotebookNode:
    """The (unexecuted) notebook of the source file ``path``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with open(path, encoding="utf-8") as fh:
        for i, (kind, src) in enumerate(parse(fh.read())):
            new = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
            nb.cells.append(new(src, id=f"cell-{i}"))  # fixed ids: a rebuild changes no id
    return nb


def execute(nb: nbformat.NotebookNode, budget: float = BUDGET_S) -> float:
    """Run ``nb`` in place in a fresh kernel (cwd notebooks/); the whole run must end within ``budget`` s.

    Raises nbclient's ``CellExecutionError`` on an error and ``CellTimeoutError`` when the budget is spent.
    Returns the wall time in seconds."""
    start = time.perf_counter()
    client = NotebookClient(
        nb,
        kernel_name="python3",
        resources={"metadata": {"path": HERE}},
        timeout_func=lambda cell: max(1, int(budget - (time.perf_counter() - start))),
    )
    client.execute()
    return time.perf_counter() - start


if __name__ == "__main__":
    wanted = sys.argv[1:]
    for src in sources():
        name = os.path.basename(src)
        if not wanted or any(name.startswith(w) for w in wanted):
            nb = build(src)
            seconds = execute(nb)
            nbformat.write(nb, src[:-3] + ".ipynb")
            print(f"built {name[:-3]}.ipynb in {seconds:.1f} s")

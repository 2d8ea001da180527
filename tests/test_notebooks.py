"""The teaching notebooks: each committed .ipynb is what its percent-format .py source builds, and it
executes top to bottom in a fresh kernel (within the builder's 90 s budget per notebook) and shows a
figure."""

import importlib.util
import os

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is part of the test extra")
nbclient = pytest.importorskip("nbclient", reason="nbclient is part of the test extra")

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOK_DIR = os.path.join(os.path.dirname(HERE), "notebooks")
_spec = importlib.util.spec_from_file_location(
    "build_notebooks", os.path.join(NOTEBOOK_DIR, "build_notebooks.py")
)
builder = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(builder)

SOURCES = builder.sources()
NAMES = [os.path.basename(p)[:-3] for p in SOURCES]


def test_every_notebook_has_a_source():
    for prefix in ("01_", "02_", "03_", "04_", "05_", "06_"):
        assert any(n.startswith(prefix) for n in NAMES), f"missing notebooks/{prefix}*.py"
    for name in NAMES:
        assert os.path.exists(os.path.join(NOTEBOOK_DIR, name + ".ipynb")), f"{name}.ipynb was never built"


def test_parse_percent_format():
    text = "# ruff: noqa: E402\n# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\n# %%\n# c\ny = 2\n"
    assert builder.parse(text) == [("markdown", "# Title\n\ntext"), ("code", "x = 1"), ("code", "# c\ny = 2")]
    with pytest.raises(ValueError, match="line 2"):
        builder.parse("# %% [markdown]\nnot a comment\n")
    with pytest.raises(ValueError, match="before the first"):
        builder.parse("x = 1\n# %%\n")


@pytest.mark.parametrize("source", SOURCES, ids=NAMES)
def test_committed_notebook_matches_source(source):
    nb = nbformat.read(source[:-3] + ".ipynb", as_version=4)
    expected = builder.build(source)
    got = [(c.cell_type, c.source) for c in nb.cells]
    want = [(c.cell_type, c.source) for c in expected.cells]
    assert got == want, f"{os.path.basename(source)} changed; run python notebooks/build_notebooks.py"
    executed = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in executed), "the committed notebook was not executed"


@pytest.mark.parametrize("source", SOURCES, ids=NAMES)
def test_notebook_runs_and_plots(source):
    nb = nbformat.read(source[:-3] + ".ipynb", as_version=4)
    for cell in nb.cells:  # execute from scratch: drop the committed outputs
        if cell.cell_type == "code":
            cell.outputs = []
    seconds = builder.execute(nb)  # raises CellExecutionError, or CellTimeoutError past the 90 s budget
    print(f"{os.path.basename(source)}: executed in {seconds:.1f} s")
    n_figures = sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    )
    assert n_figures >= 1, "the notebook produced no figure"

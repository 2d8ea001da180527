"""The reproductions' figures say what they show: distinguishable styles, run context in the titles, no error
bars without seeds, rejected steps and the E = 1 line on the step trace; importing them leaves the caller's
matplotlib backend alone."""

import subprocess
import sys

import pytest

from ndereg_ref.experiments import plots


@pytest.fixture
def figures(monkeypatch, tmp_path):
    """Keep every figure the functions draw (and still write the file)."""
    kept = []
    real_save = plots._save

    def save(fig, path):
        kept.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", save)
    return kept, str(tmp_path / "f.png")


def _bars(ax):
    from matplotlib.container import BarContainer

    return next(c for c in ax.containers if isinstance(c, BarContainer))


def _summary(n_seeds):
    return {
        m: {
            "prediction_nfe": {
                "mean": 50.0 + i,
                "std": 1.0 if n_seeds > 1 else 0.0,
                "values": [50.0 + i] * n_seeds,
            }
        }
        for i, m in enumerate(["vanilla", "ernode", "srnode"])
    }


def test_one_seed_gets_no_error_bars_and_several_do(figures):
    kept, path = figures
    plots.nfe_bars(_summary(1), path, context="1 seed(s), 100 iterations (quick)")
    ax = kept[-1].axes[0]
    assert _bars(ax).errorbar is None  # no ± std with one seed
    assert "one seed" in ax.get_ylabel()
    assert "100 iterations (quick)" in ax.get_title()
    plots.nfe_bars(_summary(3), path)
    assert _bars(kept[-1].axes[0]).errorbar is not None


def test_step_trace_marks_rejected_attempts_and_the_acceptance_line(figures):
    kept, path = figures
    traces = {
        "vanilla": {"step_t": [0, 0.1, 0.3], "step_h": [0.1, 0.2, 0.2], "step_error": [0.5, 0.8, 0.4],
                    "rejected_t": [0.1], "rejected_h": [0.4], "rejected_error": [3.0]},
        "ernode": {"step_t": [0, 0.2], "step_h": [0.2, 0.3], "step_error": [0.6, 0.2]},  # no rejected
    }  # fmt: skip
    plots.step_traces(traces, path, context="3 seed(s), 300 iterations")
    ax_h, ax_e = kept[-1].axes
    assert any(line.get_marker() == "x" for line in ax_h.lines)
    assert any(list(line.get_ydata()) == [1.0, 1.0] for line in ax_e.lines)  # axhline at E = 1
    assert any("E = 1" in t.get_text() for t in ax_e.get_legend().get_texts())
    assert "300 iterations" in ax_h.get_title()


def test_methods_have_distinct_styles_and_vanilla_is_black_on_top():
    methods = ["vanilla", "ernode", "srnode", "ernode+srnode", "steer", "taynode", "local_unbiased", "rnode"]
    styles = [plots.style(i, m) for i, m in enumerate(methods)]
    keys = {(s["color"], s["ls"], s["marker"]) for s in styles}
    assert len(keys) == len(methods)
    assert styles[0]["color"] == "k" and styles[0]["zorder"] > max(s["zorder"] for s in styles[1:])
    assert all(s["color"] not in ("k", "C7") for s in styles[1:])


def test_importing_the_plots_keeps_the_callers_backend():
    code = (
        "import matplotlib; matplotlib.use('svg'); import ndereg_ref.experiments.plots; "
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg"

"""The reproduction command at small scale: tables, JSON and real PNG plots."""

import json
import os
import struct

import pytest

from ndereg_ref.cli import main
from ndereg_ref.experiments.plots import DPI, FIGSIZE


def _png_size(path):
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def spiral_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("spiral")
    rc = main(
        [
            "reproduce",
            "spiral",
            "--quick",
            "--out",
            str(out),
            "--methods",
            "vanilla,ernode,local_unbiased,local_biased",
        ]
    )
    assert rc == 0
    return out


def test_outputs_written(spiral_run):
    for name in (
        "table.md",
        "results.json",
        "loss_curves.png",
        "nfe.png",
        "step_traces.png",
        "trajectories.png",
    ):
        path = os.path.join(spiral_run, name)
        assert os.path.getsize(path) > 0, name
    for name in ("loss_curves.png", "nfe.png", "step_traces.png", "trajectories.png"):
        assert _png_size(os.path.join(spiral_run, name)) == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))


def test_results_json_schema(spiral_run):
    with open(os.path.join(spiral_run, "results.json")) as fh:
        res = json.load(fh)
    assert res["experiment"] == "spiral"
    assert res["settings"]["seeds"] == [0]
    for m in ("vanilla", "ernode", "local_unbiased", "local_biased"):
        for key in ("prediction_nfe", "train_time_s", "prediction_time_s", "test_loss"):
            assert {"mean", "std"} <= set(res["methods"][m][key]), (m, key)


def test_regularized_models_predict_with_fewer_evaluations(spiral_run):
    with open(os.path.join(spiral_run, "results.json")) as fh:
        res = json.load(fh)["methods"]
    base = res["vanilla"]["prediction_nfe"]["mean"]
    for m in ("ernode", "local_unbiased", "local_biased"):
        assert res[m]["prediction_nfe"]["mean"] < base, (m, res[m]["prediction_nfe"], base)


def test_spiral_sde_quick_runs(tmp_path):
    """Small smoke run of the SDE reproduction: files and the required JSON keys."""
    rc = main(
        [
            "reproduce",
            "spiral-sde",
            "--quick",
            "--out",
            str(tmp_path),
            "--iters",
            "3",
            "--methods",
            "vanilla,ernsde",
        ]
    )
    assert rc == 0
    with open(os.path.join(tmp_path, "results.json")) as fh:
        res = json.load(fh)["methods"]
    for m in ("vanilla", "ernsde"):
        for key in ("prediction_nfe", "train_time_s", "prediction_time_s", "test_loss"):
            assert {"mean", "std"} <= set(res[m][key])
    for name in ("loss_curves.png", "nfe.png", "moments.png"):
        assert _png_size(os.path.join(tmp_path, name)) == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))


def test_report_from_results(spiral_run, tmp_path):
    """``ndereg-ref report`` builds the Markdown from results.json, with the true field's NFE computed
    (``--allow-quick``: the fixture is a quick run, which the report refuses by default)."""
    import shutil

    shutil.copytree(spiral_run, tmp_path / "results" / "spiral")
    out = tmp_path / "results.md"
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(out), "--allow-quick"]) == 0
    text = out.read_text()
    assert "| vanilla |" in text and "**ernode**: prediction NFE" in text
    import re

    m = re.search(r"The true spiral field du/dt = A u³ itself needs (\d+) NFE", text)
    assert m and int(m.group(1)) % 6 == 3  # Tsit5 under ordinarydiffeq: 3 + 6 per attempted step

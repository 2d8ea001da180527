"""No lost results: atomic outputs, partial files and resume of ``reproduce``; a ``report`` that refuses bad
input (quick runs, corrupted or invalid ``results.json``, overwriting ``docs/results.md``); one-line CLI
errors with exit code 2.

Every run here is the quick spiral experiment with 2 training iterations and 2 methods (about a second each).
"""

import glob
import json
import math
import os
import shutil

import pytest

import ndereg_ref.learn.train as train_module
from ndereg_ref.cli import main
from ndereg_ref.experiments import plots
from ndereg_ref.experiments.common import ExperimentError, run_experiment

METHODS = "vanilla,ernode"
OUTPUT_FILES = (
    "results.json",
    "table.md",
    "loss_curves.png",
    "nfe.png",
    "step_traces.png",
    "trajectories.png",
)


def _reproduce(out, iters):
    return main(
        ["reproduce", "spiral", "--quick", "--iters", str(iters), "--methods", METHODS, "--out", str(out)]
    )


def _snapshot(out):
    return {f: (out / f).read_bytes() for f in OUTPUT_FILES}


def _timing_free(res):
    """The per-seed values of every metric that does not measure wall time (those are deterministic)."""
    return {
        m: {k: v["values"] for k, v in entry.items() if k != "ratios_to_vanilla" and "time" not in k}
        for m, entry in res["methods"].items()
    }


class _CountingTrain:
    """Stands in for ``ndereg_ref.learn.train.train``: records the methods trained, raises ``fail`` at call
    number ``fail_at`` (1-based) to simulate an interruption in the middle of a run."""

    def __init__(self, monkeypatch, fail_at=None, fail=None):
        self.real, self.methods, self.fail_at = train_module.train, [], fail_at
        self.fail = RuntimeError("injected failure") if fail is None else fail
        monkeypatch.setattr(train_module, "train", self)

    def __call__(self, task, params, config):
        self.methods.append(config.method)
        if self.fail_at is not None and len(self.methods) == self.fail_at:
            raise self.fail
        return self.real(task, params, config)


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    """A finished quick run (2 iterations): the 'previous complete results'."""
    out = tmp_path_factory.mktemp("complete") / "spiral"
    assert _reproduce(out, 2) == 0
    return out


@pytest.fixture
def previous(complete_run, tmp_path):
    out = tmp_path / "spiral"
    shutil.copytree(complete_run, out)
    return out


def _interrupt_after_first_run(out, monkeypatch, iters=3):
    """Run with other settings (iters) and fail inside the second (method, seed) run."""
    trainer = _CountingTrain(monkeypatch, fail_at=2)
    with pytest.raises(RuntimeError, match="injected failure"):
        _reproduce(out, iters)
    monkeypatch.setattr(train_module, "train", trainer.real)
    return trainer


def test_interrupted_run_keeps_previous_results_and_saves_finished_run(previous, monkeypatch, capsys):
    before = _snapshot(previous)
    capsys.readouterr()
    trainer = _interrupt_after_first_run(previous, monkeypatch)
    assert trainer.methods == ["vanilla", "ernode"]
    assert _snapshot(previous) == before  # every previous output byte for byte
    assert json.loads(before["results.json"])["settings"]["iters"] == 2
    partial = json.loads((previous / "partial" / "vanilla-seed0.json").read_text())
    assert partial["method"] == "vanilla" and partial["seed"] == 0 and len(partial["fingerprint"]) == 64
    assert partial["run_settings"]["config"]["iters"] == 3
    assert not (previous / "partial" / "ernode-seed0.json").exists()
    assert not glob.glob(str(previous / "**" / "*.tmp"), recursive=True)  # no temporary file left behind
    err = [line for line in capsys.readouterr().err.splitlines() if "partial" in line]
    assert len(err) == 1
    assert str(previous / "partial") in err[0] and "previous complete results" in err[0] and "kept" in err[0]


def test_rerun_resumes_skipping_the_finished_run_with_the_same_numbers(
    previous, monkeypatch, capsys, tmp_path
):
    _interrupt_after_first_run(previous, monkeypatch)
    stored = json.loads((previous / "partial" / "vanilla-seed0.json").read_text())["record"]
    capsys.readouterr()
    trainer = _CountingTrain(monkeypatch)
    assert _reproduce(previous, 3) == 0
    assert trainer.methods == ["ernode"]  # vanilla seed 0 came from its partial file
    assert "resumed vanilla seed 0" in capsys.readouterr().err
    res = json.loads((previous / "results.json").read_text())
    assert res["settings"]["iters"] == 3
    assert res["methods"]["vanilla"]["train_time_s"]["values"] == [stored["train_time_s"]]
    assert not (previous / "partial").exists()  # complete results written: partial files removed
    # The same settings without interruption give the same numbers (training is deterministic per seed).
    monkeypatch.setattr(train_module, "train", trainer.real)
    assert _reproduce(tmp_path / "uninterrupted", 3) == 0
    ref = json.loads((tmp_path / "uninterrupted" / "results.json").read_text())
    assert _timing_free(res) == _timing_free(ref)


def test_partial_file_with_other_settings_is_recomputed(previous, monkeypatch, capsys):
    _interrupt_after_first_run(previous, monkeypatch, iters=3)
    capsys.readouterr()
    trainer = _CountingTrain(monkeypatch)
    assert _reproduce(previous, 4) == 0  # 4 iterations: the stored 3-iteration vanilla run must not be used
    assert trainer.methods == ["vanilla", "ernode"]
    assert "different settings" in capsys.readouterr().err
    assert json.loads((previous / "results.json").read_text())["methods"]["vanilla"]["train_loss"]["values"]


def test_fresh_flag_ignores_partial_files(previous, monkeypatch):
    _interrupt_after_first_run(previous, monkeypatch)
    trainer = _CountingTrain(monkeypatch)
    argv = ["reproduce", "spiral", "--quick", "--iters", "3", "--methods", METHODS, "--out", str(previous)]
    assert main(argv + ["--fresh"]) == 0
    assert trainer.methods == ["vanilla", "ernode"]


def test_unreadable_partial_file_is_recomputed(tmp_path, monkeypatch, capsys):
    out = tmp_path / "spiral"
    (out / "partial").mkdir(parents=True)
    (out / "partial" / "vanilla-seed0.json").write_text('{"fingerprint": ')
    trainer = _CountingTrain(monkeypatch)
    argv = ["reproduce", "spiral", "--quick", "--iters", "2", "--methods", "vanilla", "--out", str(out)]
    assert main(argv) == 0
    assert trainer.methods == ["vanilla"]
    assert "unreadable" in capsys.readouterr().err


def test_keyboard_interrupt_exits_130_with_one_line_and_no_traceback(tmp_path, monkeypatch, capsys):
    _CountingTrain(monkeypatch, fail_at=1, fail=KeyboardInterrupt())
    assert _reproduce(tmp_path / "spiral", 2) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert "KeyboardInterrupt" in err[0] and "no complete results were written" in err[0]


def test_failure_while_writing_outputs_replaces_nothing_and_the_rerun_trains_nothing(
    previous, monkeypatch, tmp_path
):
    before = _snapshot(previous)

    def broken_plot(*args, **kwargs):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(plots, "step_traces", broken_plot)  # drawn after loss_curves.png and nfe.png
    with pytest.raises(OSError, match="injected"):
        _reproduce(previous, 3)
    assert _snapshot(previous) == before
    assert not glob.glob(str(previous / ".*.tmp"))
    assert sorted(os.listdir(previous / "partial")) == ["ernode-seed0.json", "vanilla-seed0.json"]
    monkeypatch.undo()
    trainer = _CountingTrain(monkeypatch)
    assert _reproduce(previous, 3) == 0
    assert trainer.methods == []  # both runs had finished: only the outputs were written
    assert json.loads((previous / "results.json").read_text())["settings"]["iters"] == 3


# --- reproduce: bad settings are one line, exit code 2, before any training ---------------------------


def _no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("training started despite a bad setting")

    monkeypatch.setattr(train_module, "train", fail)


@pytest.mark.parametrize(
    "args, named",
    [
        (["--methods", "vanilla,vanila"], "'vanila'"),
        (["--methods", ""], "''"),
        (["--methods", "vanilla,vanilla"], "'vanilla'"),
        (["--seeds", "0"], "--seeds"),
        (["--iters", "-3"], "--iters"),
    ],
)
def test_reproduce_bad_setting_is_one_line_exit_2(args, named, tmp_path, monkeypatch, capsys):
    _no_training(monkeypatch)
    assert main(["reproduce", "spiral", "--quick", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0]
    assert not (tmp_path / "o").exists()


def test_reproduce_output_below_a_file_is_rejected_before_the_run(tmp_path, monkeypatch, capsys):
    _no_training(monkeypatch)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    for out in (blocker, blocker / "sub"):
        assert main(["reproduce", "spiral", "--quick", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(out) in err[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_reproduce_unwritable_output_directory_is_rejected_before_the_run(tmp_path, monkeypatch, capsys):
    _no_training(monkeypatch)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert main(["reproduce", "spiral", "--quick", "--out", str(out)]) == 2
    finally:
        out.chmod(0o700)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not writable" in err[0] and str(out) in err[0]


def test_reproduce_output_directory_refusing_writes_is_rejected_before_the_run(tmp_path, monkeypatch, capsys):
    """The same check where chmod cannot help (root): the probe file's creation fails with EACCES."""
    import errno
    import tempfile

    _no_training(monkeypatch)

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = tmp_path / "o"
    assert main(["reproduce", "spiral", "--quick", "--out", str(out)]) == 2
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not writable: Permission denied" in err[0] and str(out) in err[0]


def test_unknown_experiment_named_by_the_api():
    with pytest.raises(ExperimentError, match="'spiarl'"):
        run_experiment("spiarl")


# --- report -------------------------------------------------------------------------------------------


@pytest.fixture
def results_dir(complete_run, tmp_path):
    """results/spiral/results.json of the complete run, marked as a full run (settings.quick false)."""
    d = tmp_path / "results"
    shutil.copytree(complete_run, d / "spiral")
    _edit(d, lambda r: r["settings"].update(quick=False))
    return d


def _edit(results_dir, change):
    path = results_dir / "spiral" / "results.json"
    res = json.loads(path.read_text())
    change(res)
    path.write_text(json.dumps(res))
    return path


def _report(*args):
    return main(["report", *map(str, args)])


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_report_refuses_a_quick_run_unless_allowed(results_dir, tmp_path, capsys):
    path = _edit(results_dir, lambda r: r["settings"].update(quick=True))
    out = tmp_path / "r.md"
    assert _report("--results", results_dir, "-o", out) == 2
    line = _one_error_line(capsys)
    assert str(path) in line and "--allow-quick" in line
    assert not out.exists()
    assert _report("--results", results_dir, "-o", out, "--allow-quick") == 0
    assert "— quick run" in out.read_text()


def test_report_does_not_overwrite_docs_results_md_by_default(results_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    target = tmp_path / "docs" / "results.md"
    target.write_text("hand-kept results\n")
    assert _report("--results", results_dir) == 2
    assert "--force" in _one_error_line(capsys)
    assert target.read_text() == "hand-kept results\n"
    assert _report("--results", results_dir, "--force") == 0
    assert target.read_text().startswith("# Reproduction results")
    assert _report("--results", results_dir) == 0  # same content: nothing is lost by writing it


def test_report_on_corrupted_results_json_names_the_file(results_dir, tmp_path, capsys):
    path = results_dir / "spiral" / "results.json"
    path.write_text(path.read_text()[:200])  # cut in the middle, as by a crash of a non-atomic writer
    assert _report("--results", results_dir, "-o", tmp_path / "r.md") == 2
    line = _one_error_line(capsys)
    assert f"cannot parse {path}" in line


def test_report_on_binary_results_json_names_the_file(results_dir, tmp_path, capsys):
    path = results_dir / "spiral" / "results.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert _report("--results", results_dir, "-o", tmp_path / "r.md") == 2
    assert f"cannot parse {path}" in _one_error_line(capsys)


def _set(*keys, value):
    def change(res):
        d = res
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return change


@pytest.mark.parametrize(
    "change, field",
    [
        (_set("settings", "solver", "rtol", value=-1e-6), "settings.solver.rtol"),
        (_set("settings", "solver", "rtol", value=0.0), "settings.solver.rtol"),
        (_set("settings", "solver", "atol", value=math.nan), "settings.solver.atol"),
        (_set("settings", "solver", "atol", value="1e-6"), "settings.solver.atol"),
        (_set("settings", "solver", "atol", value=True), "settings.solver.atol"),
        (_set("settings", "solver", "method", value="tsit6"), "settings.solver.method"),
        (_set("settings", "solver", "method", value=5), "settings.solver.method"),
        (_set("settings", "solver", "convention", value="matlab"), "settings.solver.convention"),
        (_set("settings", "solver", "max_steps", value=10), "settings.solver.max_steps"),
        (_set("settings", "solver", value=["tsit5"]), "settings.solver"),
        (_set("settings", "task", "hidden", value=0), "settings.task.hidden"),
        (_set("settings", "task", "hidden", value=2.5), "settings.task.hidden"),
        (_set("settings", "task", "t_end", value=math.inf), "settings.task.t_end"),
        (_set("settings", "iters", value="300"), "settings.iters"),
        (_set("settings", "quick", value="no"), "settings.quick"),
        (
            _set("methods", "vanilla", "prediction_nfe", "mean", value=math.inf),
            "methods.vanilla.prediction_nfe.mean",
        ),
        (_set("methods", "ernode", "ratios_to_vanilla", "prediction_nfe", value="0.7"), "prediction_nfe"),
        (lambda r: r["methods"].update(ernod=r["methods"]["ernode"]), "methods (method name)"),
        (lambda r: r["settings"]["task"].pop("n_points"), "settings.task.n_points"),
    ],
)
def test_report_rejects_invalid_settings_naming_the_field(results_dir, tmp_path, capsys, change, field):
    path = _edit(results_dir, change)
    out = tmp_path / "r.md"
    assert _report("--results", results_dir, "-o", out) == 2
    line = _one_error_line(capsys)
    assert str(path) in line and field in line
    assert not out.exists()


def test_report_missing_results_directory_is_one_line(tmp_path, capsys):
    assert _report("--results", tmp_path / "nothing", "-o", tmp_path / "r.md") == 2
    assert str(tmp_path / "nothing") in _one_error_line(capsys)


def test_report_unwritable_output_is_one_line(results_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert _report("--results", results_dir, "-o", blocker / "r.md") == 2
    assert str(blocker / "r.md") in _one_error_line(capsys)


# --------------------------------------------------------------------------------------------------
# docs/results.md is generated from the committed results files
# --------------------------------------------------------------------------------------------------
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sections(text):
    parts, current = {}, None
    for line in text.split("\n"):
        if line.startswith("### "):
            current = line
            parts[current] = []
        elif current is not None:
            parts[current].append(line)
    return {k: "\n".join(v).strip() for k, v in parts.items()}


def test_every_unmarked_section_of_docs_results_is_what_the_committed_files_generate(tmp_path):
    """Each section of docs/results.md not marked as pending a rerun is, character for character, what
    ``ndereg-ref report`` writes from the committed docs/results/*.json (so no number there is typed by
    hand or left over from a lost run)."""
    out = tmp_path / "results.md"
    assert main(["report", "--results", os.path.join(_ROOT, "docs", "results"), "-o", str(out)]) == 0
    generated = _sections(out.read_text())
    committed = _sections(open(os.path.join(_ROOT, "docs", "results.md"), encoding="utf-8").read())
    unmarked = [k for k in committed if "pending rerun" not in k]
    assert unmarked, "docs/results.md has no section generated from a committed file"
    for title in unmarked:
        assert title in generated, f"{title!r} has no committed results file"
        assert committed[title] == generated[title], f"{title!r} differs from what its results file generates"

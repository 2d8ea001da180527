"""``ndereg-ref reproduce digits``: see :mod:`ndereg_ref.experiments.images`."""

from __future__ import annotations

from .images import METHODS, OUTPUT_FILES, VARIANTS, run_dataset

__all__ = ["METHODS", "OUTPUT_FILES", "VARIANTS", "run"]


def run(**kwargs) -> dict:
    kwargs.setdefault("out", "results/digits")
    return run_dataset("digits", **kwargs)

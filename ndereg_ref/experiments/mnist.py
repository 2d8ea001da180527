"""``ndereg-ref reproduce mnist``: see :mod:`ndereg_ref.experiments.images`."""

from __future__ import annotations

from .images import METHODS, OUTPUT_FILES, VARIANTS, run_dataset

__all__ = ["METHODS", "OUTPUT_FILES", "VARIANTS", "run"]


def run(**kwargs) -> dict:
    kwargs.setdefault("out", "results/mnist")
    return run_dataset("mnist", **kwargs)

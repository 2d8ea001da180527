"""Laptop-scale reproductions of the papers' experiments (``ndereg-ref reproduce <experiment>``)."""

from __future__ import annotations

from .common import run_experiment

__all__ = ["run_experiment"]

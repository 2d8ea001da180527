"""The package version (read statically by setup.cfg, imported by traces and results files)."""

__version__ = "0.1.0"

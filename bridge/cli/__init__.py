"""The ``smbridge`` command line: argument parsing and rendering only (the work is in the
capability packages). ``main`` is the console script."""

from bridge.cli.app import main

__all__ = ["main"]

"""The subcommand contract (chemprop-style)."""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod


class Subcommand(ABC):
    """One ``edorient`` subcommand.

    Attributes
    ----------
    COMMAND
        Name typed on the command line.
    HELP
        One line shown by ``edorient --help``.
    """

    COMMAND: str
    HELP: str

    @classmethod
    @abstractmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        """Add this subcommand's arguments to ``parser``."""

    @classmethod
    @abstractmethod
    def func(cls, args: argparse.Namespace) -> int | None:
        """Run the subcommand; return an exit status (``None`` means 0)."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite float (rejects nan and inf)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def disc_radius(text: str) -> float | None:
    """argparse type of ``--disc``: ``auto`` (None: measured), ``off`` (0) or a radius in (0, 16] px."""
    if text.strip().lower() == "auto":
        return None
    if text.strip().lower() == "off":
        return 0.0
    value = finite_float(text)
    if not 0 < value <= 16:
        raise argparse.ArgumentTypeError(f"expected auto, off or a radius in (0, 16] detector pixels, got {text!r}")
    return value


def bin_arg(text: str) -> int | None:
    """argparse type of ``predict --bin``: ``auto`` (None: by the spots' width) or a factor 1-16."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number 1-16, got {text!r}") from None
    if not 1 <= value <= 16:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number 1-16, got {text!r}")
    return value


def calibration_or_file(text: str):
    """``--calibration`` as a number (1/Å per pixel) or a calibration file of ``edorient
    calibrate``: (calibration, the file's :class:`~edorient.indexing.calibration.Calibration` or
    None for a number)."""
    from pathlib import Path

    from edorient.errors import EdorientError

    try:
        return finite_float(text), None
    except (argparse.ArgumentTypeError, ValueError):
        pass
    path = Path(text)
    if not path.is_file():
        if path.suffix.lower() == ".json" or "/" in text or "\\" in text:  # meant as a file: say it is not there
            raise EdorientError(f"--calibration {text}: calibration file not found (check the path; or give a number "
                                "of 1/Å per pixel, e.g. --calibration 0.0190)")
        raise EdorientError(f"--calibration {text!r} is neither a number (1/Å per pixel) nor a calibration "
                            "file; give one, e.g. --calibration 0.0190 or --calibration cal.json")
    from edorient.indexing.calibration import load_calibration

    cal = load_calibration(path)
    return float(cal.calibration), cal

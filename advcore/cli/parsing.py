"""Argument types and the one-line-error parser shared by the `python -m advcore` commands."""

from __future__ import annotations

import argparse
from fractions import Fraction

EXIT_USAGE = 2


class UsageError(Exception):
    """An option value that parses but makes no sense; reported like an argparse error."""


class Parser(argparse.ArgumentParser):
    """argparse prints the whole usage on a bad option; AdvLab prints one line."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def number(text: str) -> float:
    """A float, or a fraction such as 8/255 (the usual way to write eps for 8-bit images)."""
    text = text.strip()
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (use e.g. 0.03 or 8/255)") from None


def number_list(text: str) -> list[float]:
    return [number(part) for part in text.split(",") if part.strip()]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value

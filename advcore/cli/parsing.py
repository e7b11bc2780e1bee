"""Argument types and the one-line-error parser shared by the `python -m advcore` commands."""

from __future__ import annotations

import argparse
import re
from fractions import Fraction

EXIT_USAGE = 2


class UsageError(Exception):
    """An option value that parses but makes no sense; reported like an argparse error."""


class Parser(argparse.ArgumentParser):
    """argparse prints the whole usage on a bad option; AdvLab prints one line."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# ASCII digits only (Python's int() and float() also take other scripts' digits, such as ١٦), and an
# exponent of at most three digits (Fraction("1e99999999") computes 10**99999999: a hang, not an answer)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
MAX_INT = 10**12  # beyond every count, size and seed an option takes


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def number(text: str) -> float:
    """A finite float written in ASCII, or a fraction such as 8/255 (the usual way to write eps for 8-bit
    images); answers at once whatever the text."""
    text = text.strip()
    parts = [part.strip() for part in text.split("/")]
    if len(text) > 100 or len(parts) > 2 or not all(_DECIMAL.fullmatch(part) for part in parts):
        raise argparse.ArgumentTypeError(f"not a number: {_shown(text)} (use e.g. 0.03, 8/255 or 3e-2: ASCII "
                                         "digits, an exponent of three digits at most)")
    try:
        value = float(Fraction(text))
    except ZeroDivisionError:
        raise argparse.ArgumentTypeError(f"not a number: {_shown(text)} divides by zero") from None
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is too large to be a number") from None
    return value


def number_list(text: str) -> list[float]:
    return [number(part) for part in text.split(",") if part.strip()]


def integer(text: str) -> int:
    """A whole number written in ASCII digits, at most MAX_INT in size."""
    text = text.strip()
    if not _INTEGER.fullmatch(text) or abs(int(text)) > MAX_INT:
        raise argparse.ArgumentTypeError(f"not an integer: {_shown(text)} (ASCII digits, at most {MAX_INT:,})")
    return int(text)


def positive_int(text: str) -> int:
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def int_in(low: int, high: int):
    """An argument type: an integer from `low` to `high`."""
    def checked(text: str) -> int:
        value = integer(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:,} to {high:,}, got {value:,}")
        return value
    checked.__name__ = "integer"  # argparse names the type in its messages
    return checked

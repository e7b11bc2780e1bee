"""Options as a careless or hostile user types them, through `python -m advcore` as a real subprocess:
each refused at once with one line naming the option and exit code 2, before any work, nothing
written; and the one parser behind every numeric option, case by case."""

import argparse
import time

import pytest
from test_cli import advcore

from advcore.cli.parsing import int_in, integer, number

MODEL = "assets/models/pgd-linf/model.keras"


@pytest.mark.parametrize("args, words", [
    (["--eps", "1e400"], "argument --eps: '1e400' is too large to be a number"),
    (["--eps", "1e99999999"], "argument --eps: not a number: '1e99999999'"),
    (["--eps", "nan"], "argument --eps: not a number: 'nan'"),
    (["--eps", "inf"], "argument --eps: not a number: 'inf'"),
    (["--eps", "0x10"], "argument --eps: not a number: '0x10'"),
    (["--eps", "1/0"], "divides by zero"),
    (["--eps", "١٦"], "argument --eps: not a number"),
    (["--eps", "1e-320"], "eps 9.99989e-321 is below 1e-06, too small to move a pixel: use 0 for no attack"),
    (["--eps", "0.1", "--count", "١٦"], "argument --count: not an integer: '١٦'"),
    (["--eps", "0.1", "--count", "0"], "argument --count: must be from 1 to 10,000,000, got 0"),
    (["--eps", "0.1", "--batch-size", "1e11"], "argument --batch-size: not an integer: '1e11'"),
    (["--eps", "0.1", "--batch-size", "100000000000"], "argument --batch-size: must be from 1 to 65,536"),
    (["--eps", "0.1", "--seed", "-1"], "argument --seed: must be from 0 to 4,294,967,295, got -1"),
    (["--eps", "0.1", "--start", "9" * 30], "argument --start: not an integer"),
    (["--eps", "0.1", "--target", "²"], "argument --target: not an integer: '²'"),
    (["--eps", "0.1", "--steps", "10" + "0" * 5000], "argument --steps: not an integer"),
], ids=["1e400", "1e99999999", "nan", "inf", "hex", "1/0", "arabic eps", "1e-320", "arabic count", "count 0",
        "batch 1e11", "batch 1e11 digits", "seed -1", "start 30 digits", "superscript", "5000 digits"])
def test_a_bad_number_is_refused_at_once_in_one_line(tmp_path, args, words):
    began = time.monotonic()
    done = advcore("attack", "--model", MODEL, *args, "--out", tmp_path / "out")
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and time.monotonic() - began < 60
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("out, words", [
    ("a file", "is a file, not a folder"),
    ("/proc/self/x", "the folder cannot be made (No such file or directory)"),
    ("under a file", "the folder cannot be made"),
], ids=["existing file", "/proc", "below a file"])
def test_out_is_checked_before_any_work(tmp_path, out, words):
    (tmp_path / "taken").write_text("keep me\n")
    path = {"a file": tmp_path / "taken", "under a file": tmp_path / "taken" / "results"}.get(out, out)
    done = advcore("evaluate", "--model", tmp_path / "no-such.keras", "--eps", "0.1", "--out", path)
    assert done.returncode == 2 and f"--out {path}" in done.stderr and words in done.stderr
    assert "no such model file" not in done.stderr  # the model would only be read after
    assert (tmp_path / "taken").read_text() == "keep me\n"


def test_traverse_out_must_name_a_file(tmp_path):
    done = advcore("traverse", MODEL, "--target", "3", "--out", tmp_path)
    assert done.returncode == 2 and "is a folder; name the .mp4 or .gif file to write" in done.stderr


@pytest.mark.parametrize("text, value", [("0.03", 0.03), ("8/255", 8 / 255), (" 2/255 ", 2 / 255), ("3e-2", 0.03),
                                         (".5", 0.5), ("5.", 5.0), ("-1", -1.0), ("1e308", 1e308)])
def test_numbers_the_parser_takes(text, value):
    assert number(text) == value


@pytest.mark.parametrize("text", ["", "1e309", "1e1000", "1e99999999", "1_000", "１", "٣", "nan", "-inf", "1/2/3",
                                  "8/", "/255", "1e", "e5", "0b1", "1" * 101])
def test_numbers_the_parser_refuses_at_once(text):
    began = time.monotonic()
    with pytest.raises(argparse.ArgumentTypeError):
        number(text)
    assert time.monotonic() - began < 0.1


@pytest.mark.parametrize("text", ["1.0", "1e3", "١٦", "1_0", "10" * 10, "", "+"])
def test_integers_are_ascii_digits_of_bounded_size(text):
    with pytest.raises(argparse.ArgumentTypeError):
        integer(text)
    assert integer(" 42 ") == 42 and integer("-7") == -7
    with pytest.raises(argparse.ArgumentTypeError, match="must be from 1 to 8, got 9"):
        int_in(1, 8)("9")

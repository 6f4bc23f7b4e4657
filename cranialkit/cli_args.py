"""Argument types shared by every ``cranialkit`` command: numbers in range, devices, existing files, output paths.

Each is an ``argparse`` ``type=`` function, so a bad value is refused while the command line is read — before any
dataset is loaded or network built — with one line that names the flag (see :mod:`cranialkit.cli`). Nothing here
imports torch unless a device other than ``auto``/``cpu`` is asked for.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_range(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An integer in ``[low, high]`` (either bound may be None)."""

    def parse(text: str) -> int:
        value = int(_number(text, int))
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_bounds(low, high)}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def float_range(low: float | None = None, high: float | None = None, low_open: bool = False) -> Callable[[str], float]:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``; either bound may be None)."""

    def parse(text: str) -> float:
        value = float(_number(text, float))
        below = low is not None and (value <= low if low_open else value < low)
        if below or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_bounds(low, high, low_open)}, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


def _bounds(low, high, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"{'above' if low_open else 'at least'} {low:g} and at most {high:g}"
    if low is not None:
        return f"{'above' if low_open else 'at least'} {low:g}"
    return f"at most {high:g}"


positive_int = int_range(1)
non_negative_int = int_range(0)
positive_float = float_range(0.0, low_open=True)
non_negative_float = float_range(0.0)


def grid_side(multiple: int = 8, low: int = 16, high: int = 512) -> Callable[[str], int]:
    """A cubic grid side in voxels: ``low``–``high`` and divisible by ``multiple`` (network and pyramid levels)."""

    def parse(text: str) -> int:
        value = int(_number(text, int))
        if not low <= value <= high or value % multiple:
            raise argparse.ArgumentTypeError(f"must be a multiple of {multiple} from {low} to {high} voxels "
                                             f"(e.g. 32, 64, 128), got {value}")
        return value

    parse.__name__ = "grid side"
    return parse


def device_name(text: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, available on this machine."""
    from cranialkit.config import device_problem

    problem = device_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return text


def existing_file(text: str) -> Path:
    """A path to a file that exists (named in the error when it does not)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{path}: no such file")
    return path


def existing_folder(text: str) -> Path:
    """A path to a folder that exists."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: {'is a file, not a folder' if path.exists() else 'no such folder'}")
    return path


def data_source(text: str) -> str:
    """``phantom``, an existing dataset folder, or the name of a downloaded dataset (``skullfix``)."""
    from cranialkit.data.datasets import dataset_folder

    if text == "phantom":
        return text
    try:
        return str(dataset_folder(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def output_file(*suffixes: str) -> Callable[[str], Path]:
    """A file to write, with one of ``suffixes`` (case-insensitive), whose folder is not a file."""

    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if suffixes and not path.name.lower().endswith(suffixes):
            raise argparse.ArgumentTypeError(f"{path}: write a {' or '.join(suffixes)} file")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise argparse.ArgumentTypeError(f"{parent} is a file, so {path} cannot be written")
                break
        return path

    parse.__name__ = "output file"
    return parse


def output_folder(text: str) -> Path:
    """A folder to write into (made when missing), which is not a file."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file; give a folder")
    return path

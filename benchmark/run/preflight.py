"""What a command checks before its first cell: numbers in range, output folders it can write, the accelerator.

    medtl tune SUITE --n-trials 0            # refused at once: "must be >= 1", the fix, exit 2
    medtl benchmark SUITE --report-dir /a/file/x    # refused before any cell trains, not after the last one
    medtl benchmark SUITE --accelerator gpu  # on a machine without a GPU: refused before the first cell

Each failure costs seconds instead of a suite's training time, and its message names the flag, the
value and the fix. argparse turns an `ArgumentTypeError` of a `number(...)` type into
"medtl CMD: error: argument --FLAG: ...", exit 2.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path


class PreflightError(ValueError):
    """An option a run cannot work with; the message names the option, its value and the fix."""


def number(kind: type, minimum: float, *, fix: str, above: bool = False, maximum: float | None = None) -> Callable[[str], float]:
    """An argparse `type=`: `kind` (int or float) >= `minimum` (> with `above`), <= `maximum`; else the valid range
    and `fix`. Zero is never silently "not given": a flag's absence is its default, a given 0 is checked."""
    word = "a whole number" if kind is int else "a number"
    flag = fix.split()[0] + " " if fix.startswith("--") else ""  # the message repeats the flag with the value given
    valid = f"{'>' if above else '>='} {minimum:g}" + (f" and <= {maximum:g}" if maximum is not None else "")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {word}; valid: {word} {valid}. Fix: {fix}") from None
        if value != value or (value <= minimum if above else value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{flag}{text} is out of range; valid: {valid}. Fix: {fix}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def numbers(minimum: int, *, fix: str) -> Callable[[str], list[int]]:
    """An argparse `type=` for a comma-separated list of whole numbers, each >= `minimum` (e.g. --batch-sizes 1,8,32)."""
    one = number(int, minimum, fix=fix)

    def parse(text: str) -> list[int]:
        parts = [p.strip() for p in text.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(f"{text!r} has an empty item; valid: whole numbers >= {minimum} separated by "
                                             f"commas. Fix: {fix}")
        return [one(p) for p in parts]

    return parse


def writable_folder(folder: Path) -> bool:
    """Whether files can be created in `folder` (an existing folder); one predicate, so tests can stand in for a
    read-only mount (tests run as root, whom chmod does not stop)."""
    from tracking.preflight import _writable

    return _writable(folder)


def check_output_folder(path: Path | str, flag: str) -> None:
    """`path` is a folder that exists and can be written, or can be created: PreflightError naming `flag` otherwise.

    Walks up to the first part of the path that exists: a file there (a path under a file) or a folder that
    cannot be written would fail only after the work is done, when the report is written.
    """
    path = Path(path)
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == path.absolute() else f"lies under {probe}, which is a file"
        raise PreflightError(f"{flag} {path}: {what}, so nothing can be written there. Fix: pass a folder path "
                             f"(e.g. {flag} reports/run1), or move the file {probe} aside.")
    if not writable_folder(probe):
        raise PreflightError(f"{flag} {path}: folder {probe} is not writable (read-only, or another user's), so the "
                             f"outputs could not be written after the work is done. Fix: pass a folder you can write to "
                             f"({flag} ~/medtl-reports), or run from one.")


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")  # what Lightning accepts on the machines medtl runs on


def check_accelerator(accelerator: str) -> None:
    """`--accelerator` is known, and a GPU one has a device here: PreflightError with the fix, before the first cell."""
    if accelerator not in ACCELERATORS:
        raise PreflightError(f"--accelerator {accelerator!r} is not an accelerator medtl knows. Valid: "
                             f"{', '.join(ACCELERATORS)}. Fix: --accelerator auto (a GPU when there is one, else the CPU).")
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
            raise PreflightError(f"--accelerator {accelerator}: this machine has no CUDA GPU that torch can use "
                                 f"(torch {torch.__version__}, {built}; CUDA_VISIBLE_DEVICES="
                                 f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')!s}). Every cell would fail. Fix: "
                                 "--accelerator cpu (or auto), or run on a machine with a GPU and a CUDA build of torch.")
    if accelerator == "mps":
        import torch

        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise PreflightError("--accelerator mps: Apple's Metal (MPS) is not available on this machine. Fix: "
                                 "--accelerator cpu (or auto).")

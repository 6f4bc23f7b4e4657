"""``cranialkit <command>``: the steps a researcher runs without a notebook.

Each feature area adds its commands through an ``add_parsers(subparsers)`` function in its own ``cli_*`` module;
this file wires them together and turns every error into one line on stderr,
``error: <file or --flag>: <problem>; <what to do>``, with exit code 2 for a bad command line and 1 for anything
else. ``--debug`` (anywhere on the line) or ``CRANIALKIT_DEBUG=1`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from cranialkit.errors import CranialkitError, UsageError

DEBUG_ENV = "CRANIALKIT_DEBUG"

# Modules that contribute commands; each defines add_parsers(subparsers) and sets `func` on its parsers.
_COMMAND_MODULES = (
    "cranialkit.cli_data",
    "cranialkit.cli_registration",
    "cranialkit.cli_reconstruction",
    "cranialkit.cli_generative",
    "cranialkit.cli_viz",
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one :class:`UsageError` line naming the flag (no usage dump)."""

    def error(self, message: str) -> None:
        if message.startswith("argument "):  # "argument --steps: must be at least 1, got -5"
            message = message[len("argument "):]
            name, _, problem = message.partition(": ")
            if not name.startswith("-") and ": " in problem:  # a positional whose problem names its file already
                message = problem
        elif message.startswith("the following arguments are required: "):
            message = f"{message.split(': ', 1)[1]}: required"
        elif message.startswith("unrecognized arguments: "):
            message = f"{message.split(': ', 1)[1]}: unknown argument"
        raise UsageError(f"{message}; see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cranialkit", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of an error (also: {DEBUG_ENV}=1; allowed anywhere)")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    subparsers.add_parser("info", help="print versions, device and data directory").set_defaults(func=_info)
    runner = subparsers.add_parser("run-notebooks", help="execute the notebook series headless and write an index")
    runner.add_argument("--out", default="outputs", help="folder for executed notebooks and index.html")
    runner.add_argument("--only", nargs="*", help="notebook numbers or names to run (default: all)")
    runner.add_argument("--smoke", action="store_true", help="run with smoke=True (tiny sizes)")
    runner.add_argument("--no-resume", action="store_true", help="run again notebooks that already ran")
    runner.set_defaults(func=_run_notebooks)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # area not built yet
                continue
            raise
        module.add_parsers(subparsers)
    return parser


def _info(args: argparse.Namespace) -> int:
    from cranialkit.config import data_dir, print_config

    print_config()
    data_dir()  # an unusable data directory is shown above and ends the command with its one-line error
    return 0


def _run_notebooks(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cranialkit.runner import list_notebooks, run_series

    notebooks = list_notebooks()
    if args.only:
        notebooks = [p for p in notebooks if any(p.stem.startswith(o) or p.stem == o for o in args.only)]
        if not notebooks:
            raise UsageError(f"--only {' '.join(args.only)}: no notebook matches; give numbers such as 01 or 10")
    runs = run_series(Path(args.out), notebooks, {"smoke": True} if args.smoke else None, resume=not args.no_resume)
    print(f"index: {Path(args.out).resolve() / 'index.html'}")
    return 0 if all(r.ok for r in runs) else 1


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (0 done, 1 failed, 2 bad command line)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted; run the same command again to resume where it stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every error becomes one line; --debug shows the traceback
        if debug:
            raise
        code, line = describe_error(exc)
        print(f"error: {line}", file=sys.stderr)
        return code


def describe_error(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message (without ``error:``) of an exception raised by a command."""
    if isinstance(exc, CranialkitError):
        return exc.exit_code, _one_line(str(exc))
    if isinstance(exc, OSError):
        where = exc.filename or "a file"
        advice = {errno.EACCES: "check its permissions or choose another path",
                  errno.EPERM: "check its permissions or choose another path",
                  errno.ENOENT: "check the path",
                  errno.ENOSPC: "free some disk space and run the same command again",
                  errno.EROFS: "choose a writable location",
                  errno.EISDIR: "give a file, not a folder",
                  errno.ENOTDIR: "a part of the path is a file, not a folder"}.get(exc.errno, "check the path")
        return 1, _one_line(f"{where}: {exc.strerror or exc}; {advice}")
    if isinstance(exc, (ValueError, FloatingPointError)):
        return 1, _one_line(str(exc))
    return 1, _one_line(f"unexpected {type(exc).__name__}: {exc}; rerun with --debug and report the traceback")


def _one_line(text: str) -> str:
    """Messages that list several problems on indented lines are joined with "; " into one line."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    line = ""
    for part in parts:
        line += part if not line else (" " if line.endswith(":") else "; ") + part
    return line or "(no message)"


if __name__ == "__main__":
    sys.exit(main())

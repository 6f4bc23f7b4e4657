"""``cranialkit <command>``: the steps a researcher runs without a notebook.

Each feature area adds its commands through an ``add_parsers(subparsers)`` function in its own ``cli_*`` module;
this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute commands; each defines add_parsers(subparsers) and sets `func` on its parsers.
_COMMAND_MODULES = (
    "cranialkit.cli_data",
    "cranialkit.cli_registration",
    "cranialkit.cli_reconstruction",
    "cranialkit.cli_generative",
    "cranialkit.cli_viz",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cranialkit", description=__doc__.splitlines()[0])
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
    from cranialkit.config import print_config

    print_config()
    return 0


def _run_notebooks(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cranialkit.runner import list_notebooks, run_series

    notebooks = list_notebooks()
    if args.only:
        notebooks = [p for p in notebooks if any(p.stem.startswith(o) or p.stem == o for o in args.only)]
        if not notebooks:
            print(f"no notebook matches {args.only}")
            return 2
    runs = run_series(Path(args.out), notebooks, {"smoke": True} if args.smoke else None, resume=not args.no_resume)
    print(f"index: {Path(args.out).resolve() / 'index.html'}")
    return 0 if all(r.ok for r in runs) else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

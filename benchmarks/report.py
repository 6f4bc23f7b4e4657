"""Benchmark results as a reference: each benchmark writes one JSON record, this script renders them all.

    python benchmarks/report.py            # docs/benchmarks/*.json → docs/BENCHMARKS.md   (= make bench-report)
    python benchmarks/report.py --check    # exit 1 when docs/BENCHMARKS.md differs from what the records give

The convention, followed by every script in ``benchmarks/`` (``--json docs/benchmarks`` writes
``docs/benchmarks/<name>.json``; ``make bench`` runs them all, then this script):

* each benchmark writes ``docs/benchmarks/<name>.json`` — one current result per benchmark (older results live in
  git history, not in the page);
* header keys: ``benchmark`` (the name, = the file name), ``title``, ``date`` (YYYY-MM-DD), ``device`` (in words,
  with the CPU model or the GPU), ``threads`` (torch threads), ``command`` (the exact command line); a value the
  measurement did not record is the string ``"not recorded"``;
* ``tables``: a list of ``{"title": str, "columns": [str], "rows": [[...]], "note": str (optional)}``, rendered
  generically as Markdown tables;
* optional ``figure`` (a path relative to ``docs/``, e.g. ``benchmarks/x.png``, rendered as an image) and
  ``notes`` (a list of short strings);
* any other key holds raw data and is not rendered.

:func:`make_record` builds a record (with :func:`describe_machine` for the device) and :func:`write_record`
checks and writes it; :func:`render` turns records into the page: a one-line header per benchmark (device, threads,
date, command) above its tables, so a figure is never read without the machine and the day it belongs to.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "docs" / "benchmarks"
PAGE = REPO / "docs" / "BENCHMARKS.md"
HEADER_KEYS = ("benchmark", "title", "date", "device", "threads", "command")
NOT_RECORDED = "not recorded"
INTRO = """# Benchmarks

The current figures of every benchmark, each headed by machine, torch threads, date and command. Generated from
`docs/benchmarks/*.json` by `make bench-report`; each script in `benchmarks/` writes its record with `--json
docs/benchmarks/<name>.json`. CPU times depend on the machine's load: compare figures within one record.
"""


class RecordError(ValueError):
    """A benchmark record that does not follow the convention (the message names the file and the problem)."""


def describe_machine(device: object = "cpu") -> str:
    """The device in words: the GPU's name for CUDA, else the CPU model and its core count."""
    text = str(device)
    if text.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(torch.device(text))} (CUDA), torch {torch.__version__}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} cores"


def command_line(script: str, argv: Sequence[str], folders: Sequence[str] = ("--data", "--out", "--json"),
                 left_out: dict[str, int] | None = None) -> str:
    """The command that made a record, as a reader would rerun it: the paths after each flag of ``folders`` named
    by their last part (``<name>``: they are this machine's paths); each flag of ``left_out`` dropped with the
    number of values it takes (default ``--note`` and its sentence: the notes are in the record itself); words with
    spaces quoted."""
    left_out = {"--note": 1} if left_out is None else left_out
    words, hide, skip = ["python", script], False, 0
    for word in argv:
        if skip:
            skip -= 1
            continue
        if word in left_out:
            skip = left_out[word]
            continue
        words.append(f"<{Path(word).name}>" if hide and not word.startswith("--") else word)
        hide = word in folders or (hide and not word.startswith("--") and "/" in word)
    return " ".join(f'"{w}"' if " " in w else w for w in words)


def make_record(benchmark: str, title: str, tables: Sequence[dict], threads: int | str, device: str,
                date: str | None = None, command: str | None = None, notes: Sequence[str] = (),
                figure: str | None = None, **raw) -> dict:
    """A record of the convention (module docstring). ``date`` defaults to today, ``command`` to this process's
    command line; ``raw`` keys (the script's full JSON output, say) are kept but not rendered."""
    import time

    record = {"benchmark": benchmark, "title": title, "date": date or time.strftime("%Y-%m-%d"), "device": device,
              "threads": threads, "command": command or " ".join(["python", *sys.argv]), "tables": list(tables)}
    if notes:
        record["notes"] = list(notes)
    if figure:
        record["figure"] = figure
    record.update(raw)
    return record


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence], note: str | None = None) -> dict:
    """One table of a record."""
    entry = {"title": title, "columns": list(columns), "rows": [list(row) for row in rows]}
    if note:
        entry["note"] = note
    return entry


def validate(record: dict, source: str = "record") -> dict:
    """Check ``record`` against the convention; raises :class:`RecordError` naming ``source`` and the problem."""
    if not isinstance(record, dict):
        raise RecordError(f"{source}: a record is a JSON object, got {type(record).__name__}")
    missing = [key for key in (*HEADER_KEYS, "tables") if key not in record]
    if missing:
        raise RecordError(f"{source}: missing keys {missing}")
    if record["date"] != NOT_RECORDED and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(record["date"])):
        raise RecordError(f"{source}: date must be YYYY-MM-DD or {NOT_RECORDED!r}, got {record['date']!r}")
    if not isinstance(record["tables"], list):
        raise RecordError(f"{source}: tables must be a list")
    for i, entry in enumerate(record["tables"]):
        if not isinstance(entry, dict) or not {"title", "columns", "rows"} <= set(entry):
            raise RecordError(f"{source}: table {i} needs title, columns and rows")
        width = len(entry["columns"])
        bad = [j for j, row in enumerate(entry["rows"]) if not isinstance(row, list) or len(row) != width]
        if bad:
            raise RecordError(f"{source}: table {i} ({entry['title']!r}): rows {bad} do not have {width} cells")
    if "notes" in record and not all(isinstance(n, str) for n in record["notes"]):
        raise RecordError(f"{source}: notes must be a list of strings")
    return record


def write_record(path: str | os.PathLike, record: dict) -> Path:
    """Check ``record`` and write it as JSON to ``path`` — or, when ``path`` is a folder, to
    ``<path>/<benchmark>.json`` — atomically (a temporary file, then a rename)."""
    path = Path(path)
    if path.is_dir():
        path = path / f"{record.get('benchmark')}.json"
    validate(record, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    os.replace(temporary, path)
    return path


def load_records(folder: Path = RECORDS) -> list[dict]:
    """Every record in ``folder``, checked, in file-name order."""
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}: not valid JSON ({exc})") from exc
        validate(record, str(path))
        if record["benchmark"] != path.stem:
            raise RecordError(f"{path}: holds benchmark {record['benchmark']!r}; name the file after it")
        records.append(record)
    return records


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render(records: Sequence[dict]) -> str:
    """The Markdown page for ``records``: the introduction, then per benchmark its title, a one-line header and
    its tables, figure and notes."""
    lines = [INTRO]
    for record in records:
        lines.append(f"## {record['title']}")
        lines.append(f"*{record['device']} · torch threads: {record['threads']} · {record['date']} · "
                     f"`{record['command']}`*")
        for k, entry in enumerate(record["tables"]):
            if k:
                lines.append("")
            lines.append(f"#### {entry['title']}")
            lines.append("| " + " | ".join(_cell(c) for c in entry["columns"]) + " |")
            lines.append("|" + "---|" * len(entry["columns"]))
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in entry["rows"]]
            if entry.get("note"):
                lines += ["", entry["note"]]
        if record.get("figure"):
            lines += ["", f"![{record['title']}]({record['figure']})"]
        if record.get("notes"):
            lines.append("")
            lines += [f"- {note}" for note in record["notes"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=RECORDS, help="folder of the JSON records")
    parser.add_argument("--out", type=Path, default=PAGE, help="the page to write")
    parser.add_argument("--check", action="store_true", help="only check that the page is up to date")
    args = parser.parse_args(argv)
    try:
        page = render(load_records(args.records))
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        if not args.out.is_file() or args.out.read_text() != page:
            print(f"error: {args.out} is not what {args.records} gives; run `make bench-report`", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(page)
    print(f"wrote {args.out} ({page.count(chr(10))} lines, {len(load_records(args.records))} benchmarks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

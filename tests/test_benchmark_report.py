"""docs/BENCHMARKS.md is generated from the committed records in docs/benchmarks/ (benchmarks/report.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("benchmark_report", REPO / "benchmarks" / "report.py")
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def _record(**changes) -> dict:
    record = report.make_record(
        "toy", "A toy benchmark", [report.table("speed", ["grid", "s"], [["64³", 0.5], ["128³", 1.25]], note="n.b.")],
        threads=2, device="CPU: Test CPU, 2 cores", date="2026-01-02", command="python benchmarks/toy.py",
        notes=["a short note"], figure="benchmarks/toy.png", raw_numbers=[1, 2, 3])
    record.update(changes)
    return record


def test_committed_page_is_generated_from_the_committed_records():
    records = report.load_records()
    assert records, "no records in docs/benchmarks"
    page = report.render(records)
    assert (REPO / "docs" / "BENCHMARKS.md").read_text() == page, "run `make bench-report`"
    assert page.count("\n") <= 300, "docs/BENCHMARKS.md is a reference: at most 300 lines"
    assert report.main(["--check"]) == 0


def test_render_heads_every_table_with_machine_threads_date_and_command():
    page = report.render([_record()])
    assert "## A toy benchmark" in page
    assert "*CPU: Test CPU, 2 cores · torch threads: 2 · 2026-01-02 · `python benchmarks/toy.py`*" in page
    assert "#### speed\n| grid | s |\n|---|---|\n| 64³ | 0.5 |\n| 128³ | 1.25 |\n\nn.b." in page
    assert "![A toy benchmark](benchmarks/toy.png)" in page and "- a short note" in page
    assert "raw_numbers" not in page and "[1, 2, 3]" not in page


def test_write_record_names_the_file_after_the_benchmark_and_refuses_bad_records(tmp_path):
    path = report.write_record(tmp_path, _record())
    assert path == tmp_path / "toy.json" and json.loads(path.read_text())["raw_numbers"] == [1, 2, 3]
    assert report.load_records(tmp_path)[0]["title"] == "A toy benchmark"
    bad_rows = _record(tables=[report.table("t", ["a", "b"], [[1]])])
    with pytest.raises(report.RecordError, match=r"bad\.json.*rows \[0\] do not have 2 cells"):
        report.write_record(tmp_path / "bad.json", bad_rows)
    with pytest.raises(report.RecordError, match="date must be YYYY-MM-DD"):
        report.validate(_record(date="4 Dec"), "x.json")
    with pytest.raises(report.RecordError, match=r"missing keys \['device'\]"):
        report.validate({k: v for k, v in _record().items() if k != "device"}, "x.json")
    (tmp_path / "other.json").write_text(json.dumps(_record()))
    with pytest.raises(report.RecordError, match="name the file after it"):
        report.load_records(tmp_path)


def test_check_fails_when_the_page_is_stale(tmp_path):
    report.write_record(tmp_path, _record())
    page = tmp_path / "BENCHMARKS.md"
    assert report.main(["--records", str(tmp_path), "--out", str(page)]) == 0
    assert report.main(["--records", str(tmp_path), "--out", str(page), "--check"]) == 0
    report.write_record(tmp_path, _record(date="2026-01-03"))
    assert report.main(["--records", str(tmp_path), "--out", str(page), "--check"]) == 1


def test_command_line_names_folders_by_their_last_part_and_leaves_notes_out():
    argv = ["--data", "/home/me/skullfix_dev", "--sizes", "5", "10", "--sim-checkpoints", "/a/c/best.pt",
            "/a/f/last.pt", "--note", "A sentence with spaces.", "--report-only", "--label", "two words",
            "--json", "docs/benchmarks"]
    line = report.command_line("benchmarks/x.py", argv, folders=("--data", "--json", "--sim-checkpoints"),
                               left_out={"--note": 1, "--report-only": 0})
    assert line == ('python benchmarks/x.py --data <skullfix_dev> --sizes 5 10 --sim-checkpoints <best.pt> <last.pt> '
                    '--label "two words" --json <benchmarks>')
    assert "sentence" not in report.command_line("x.py", ["--note", "A sentence.", "--out", "/tmp/run"])

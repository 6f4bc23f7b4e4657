"""Tests for cranialkit.data.download, data_scripts/ and the data CLI, on small archives laid out like the real
ones and served from a local HTTP server on 127.0.0.1 (never the network)."""

from __future__ import annotations

import http.server
import io
import json
import os
import runpy
import socket
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_datasets import tiny_triplet

from cranialkit.cli import main as cli_main
from cranialkit.data import download as dl
from cranialkit.data.datasets import DatasetLayoutError, load_dataset
from cranialkit.io import write_volume

REPO = Path(__file__).resolve().parents[1]


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files[path]`` with HTTP Range support; can ignore Range or cut the connection short."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.requests.append((self.path, self.headers.get("Range")))
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        ranged = self.headers.get("Range")
        if ranged and not self.server.ignore_range:
            start = int(ranged.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cut_after is not None:
            self.wfile.write(body[: self.server.cut_after])
            self.server.cut_after = None
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.files, httpd.requests, httpd.ignore_range, httpd.cut_after = {}, [], False, None
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def nrrd_bytes(tmp_path: Path, volume) -> bytes:
    path = write_volume(volume, tmp_path / "scratch" / "v.nrrd")
    return path.read_bytes()


def skullbreak_zip(tmp_path: Path, ids=("000", "001", "002"), classes=("bilateral", "random_1"),
                   drop=()) -> bytes:
    """A zip laid out like skullbreak_training.zip: a top folder holding complete_skull/, defective_skull/<class>/,
    implant/<class>/."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, case_id in enumerate(ids):
            full, defective, implant = (nrrd_bytes(tmp_path, v) for v in tiny_triplet(n))
            zf.writestr(f"SkullBreak/complete_skull/{case_id}.nrrd", full)
            for cls in classes:
                zf.writestr(f"SkullBreak/defective_skull/{cls}/{case_id}.nrrd", defective)
                if f"implant/{cls}/{case_id}" not in drop:
                    zf.writestr(f"SkullBreak/implant/{cls}/{case_id}.nrrd", implant)
    return buffer.getvalue()


def skullfix_zip(tmp_path: Path, ids=("000", "001", "002")) -> bytes:
    """A zip that, like the SkullFix share, holds training_set.zip (training_set/{complete,defective,implant})."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for n, case_id in enumerate(ids):
            for part, vol in zip(("complete_skull", "defective_skull", "implant"), tiny_triplet(n)):
                zf.writestr(f"training_set/{part}/{case_id}.nrrd", nrrd_bytes(tmp_path, vol))
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as zf:
        zf.writestr("SkullFix/training_set.zip", inner.getvalue())
        zf.writestr("SkullFix/README.txt", "licence: CC BY-NC-SA 4.0")
    return outer.getvalue()


def test_fetch_resumes_from_part_file_with_range(server, tmp_path):
    data = np.random.default_rng(0).bytes(3 * dl.CHUNK_BYTES + 123)
    server.files["/a.zip"] = data
    target = tmp_path / "a.zip"
    Path(str(target) + ".part").write_bytes(data[:1000])
    seen = []
    dl.fetch(server.url + "/a.zip", target, progress=lambda done, total: seen.append((done, total)))
    assert target.read_bytes() == data and not Path(str(target) + ".part").exists()
    assert server.requests == [("/a.zip", "bytes=1000-")]
    assert seen[-1] == (len(data), len(data))
    dl.fetch(server.url + "/a.zip", target)  # already there: no request
    assert len(server.requests) == 1


def test_fetch_restarts_when_server_ignores_range(server, tmp_path):
    data = b"x" * 5000 + b"y" * 5000
    server.files["/b.zip"] = data
    server.ignore_range = True
    target = tmp_path / "b.zip"
    Path(str(target) + ".part").write_bytes(b"garbage-prefix")
    dl.fetch(server.url + "/b.zip", target)
    assert target.read_bytes() == data


def test_interrupted_download_is_resumed_on_the_next_run(server, tmp_path):
    data = np.random.default_rng(1).bytes(2 * dl.CHUNK_BYTES + 7)
    server.files["/c.zip"] = data
    server.cut_after = dl.CHUNK_BYTES + 5
    target = tmp_path / "c.zip"
    with pytest.raises(dl.DownloadError, match="run again to resume"):
        dl.fetch(server.url + "/c.zip", target)
    part = Path(str(target) + ".part")
    assert not target.exists() and 0 < part.stat().st_size < len(data)
    dl.fetch(server.url + "/c.zip", target)
    assert target.read_bytes() == data
    assert server.requests[-1][1] == f"bytes={dl.CHUNK_BYTES + 5}-"


def test_fetch_from_file_url_and_http_errors(server, tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"0123456789")
    target = tmp_path / "copy.bin"
    Path(str(target) + ".part").write_bytes(b"01234")
    dl.fetch(source.as_uri(), target)
    assert target.read_bytes() == b"0123456789"
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.fetch(server.url + "/missing.zip", tmp_path / "m.zip")


def test_no_network_gives_a_plain_message(tmp_path):
    with socket.socket() as sock:  # a free port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(dl.DownloadError, match=rf"cannot reach 127\.0\.0\.1:{port}: no network\?"):
        dl.fetch(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", timeout=5)


def test_verify_archive_detects_corruption_and_checksums(tmp_path):
    good = tmp_path / "good.zip"
    good.write_bytes(skullbreak_zip(tmp_path, ids=("000",), classes=("bilateral",)))
    dl.verify_archive(good, ("sha256", dl.file_digest(good, "sha256")))
    # A flipped byte inside a member's compressed data: the CRC check fails, the file is deleted.
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = zf.infolist()[0]
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    data[middle] ^= 0xFF
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(dl.DownloadError, match="corrupt"):
        dl.verify_archive(corrupt)
    assert not corrupt.exists()
    # Every single-byte corruption of the member data is caught (CRC failure or a broken deflate stream).
    for offset in range(info.header_offset + 30 + len(info.filename), middle + 40, 7):
        broken = bytearray(good.read_bytes())
        broken[offset] ^= 0x5A
        corrupt.write_bytes(bytes(broken))
        with pytest.raises(dl.DownloadError, match="corrupt"):
            dl.verify_archive(corrupt)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(dl.DownloadError, match="corrupt or incomplete zip"):
        dl.verify_archive(truncated)
    copy = tmp_path / "copy.zip"
    copy.write_bytes(good.read_bytes())
    with pytest.raises(dl.DownloadError, match="sha256 is .* expected 00"):
        dl.verify_archive(copy, ("sha256", "00" * 32), checksum_verified=True)
    copy.write_bytes(good.read_bytes())
    with pytest.warns(UserWarning, match="not verified"):
        dl.verify_archive(copy, ("md5", "00" * 16), checksum_verified=False)
    assert copy.exists()


def test_unpack_refuses_paths_outside_destination(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "no")
    with pytest.raises(dl.DownloadError, match="outside"):
        dl.unpack(evil, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()


def sources_for(server, name: str, layout: str, **kw) -> dict:
    archive = dl.Archive(f"{server.url}/{name}.zip", f"{name}.zip")
    return {name: dl.DatasetSource(name, layout, (archive,), **kw)}


def test_download_dataset_skullbreak_like_end_to_end(server, tmp_path):
    server.files["/skullbreak.zip"] = skullbreak_zip(tmp_path)
    sources = sources_for(server, "skullbreak", "skullbreak", min_subjects=3, min_classes=2,
                          expected_classes=("bilateral", "random_1"))
    root = tmp_path / "data"
    umask = os.umask(0o022)
    try:
        final = dl.download_dataset("skullbreak", root=root, sources=sources, quiet=True)
    finally:
        os.umask(umask)
    assert final == root / "skullbreak"
    # readable by the other users of a shared data folder, like anything made with umask 022
    assert stat.S_IMODE(final.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in final.rglob("*") if p.is_file()} == {0o644}
    ds = load_dataset(final)
    assert ds.layout == "skullbreak" and len(ds) == 6
    assert np.array_equal(ds[1].implant.array, tiny_triplet(1)[2].array)
    record = json.loads((final / dl.RECORD_NAME).read_text())
    assert record["summary"]["cases"] == 6
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "staging folder left behind"
    requests = len(server.requests)
    assert dl.download_dataset("skullbreak", root=root, sources=sources, quiet=True) == final
    assert len(server.requests) == requests  # finished: nothing fetched again


def test_download_dataset_skullfix_with_nested_zip(server, tmp_path):
    server.files["/skullfix.zip"] = skullfix_zip(tmp_path)
    final = dl.download_dataset("skullfix", root=tmp_path / "data",
                                sources=sources_for(server, "skullfix", "skullfix", min_subjects=3), quiet=True)
    ds = load_dataset(final)
    assert ds.layout == "skullfix" and ds.subjects() == ["000", "001", "002"]


def test_download_dataset_reports_missing_files_and_too_few_subjects(server, tmp_path):
    server.files["/skullbreak.zip"] = skullbreak_zip(tmp_path, drop=("implant/random_1/001",))
    sources = sources_for(server, "skullbreak", "skullbreak", min_subjects=3)
    archive = tmp_path / "data" / "downloads" / "skullbreak" / "skullbreak.zip"
    with pytest.raises(DatasetLayoutError, match=rf"{archive}: not the expected skullbreak dataset \(the unpacked "
                                                 r"archive/SkullBreak: .*implant/random_1: missing for cases 001"):
        dl.download_dataset("skullbreak", root=tmp_path / "data", sources=sources, quiet=True)
    assert not (tmp_path / "data" / "skullbreak").exists()
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]
    assert not archive.exists()  # deleted: the next run downloads it again instead of failing on the same file
    server.files["/skullbreak.zip"] = skullbreak_zip(tmp_path)
    sources = sources_for(server, "skullbreak", "skullbreak", min_subjects=114)
    with pytest.raises(DatasetLayoutError, match="3 subjects, expected at least 114"):
        dl.download_dataset("skullbreak", root=tmp_path / "data", sources=sources, quiet=True)
    with pytest.raises(ValueError, match="unknown dataset"):
        dl.download_dataset("brats", root=tmp_path / "data", sources=sources)


def test_organise_mug500(tmp_path):
    unpacked = tmp_path / "unpacked"
    full, defective, implant = tiny_triplet(0)
    write_volume(full, unpacked / "healthy" / "A0001" / "A0001.nrrd")
    write_volume(full, unpacked / "healthy" / "A0002" / "A0002.nrrd")
    write_volume(defective, unpacked / "craniotomy" / "B0001" / "B0001_skull.nrrd")
    write_volume(implant, unpacked / "craniotomy" / "B0001" / "B0001_implant.nrrd")
    root = dl.organise_mug500(unpacked, tmp_path / "mug500")
    ds = load_dataset(root)
    assert ds.layout == "mug500" and [c.key for c in ds] == ["craniotomy/B0001"] and len(ds.healthy) == 2
    write_volume(defective, unpacked / "craniotomy" / "B0002" / "B0002_skull.nrrd")
    with pytest.raises(DatasetLayoutError, match="without an implant"):
        dl.organise_mug500(unpacked, tmp_path / "mug500b")


def test_sources_name_official_locations():
    assert dl.SOURCES["skullbreak"].archives[0].url == "https://www.fit.vutbr.cz/~ikodym/skullbreak_training.zip"
    assert dl.SOURCES["mug500"].figshare_article == 9616319
    assert set(dl.SOURCES) == {"skullbreak", "skullfix", "mug500"}


def test_cli_make_phantoms_and_dataset_info(tmp_path, capsys):
    out = tmp_path / "ph"
    assert cli_main(["make-phantoms", "--n-subjects", "2", "--resolution", "32", "--seed", "3", "--out", str(out),
                     "--classes", "bilateral", "skullfix"]) == 0
    assert "4 cases (2 subjects × 2 classes)" in capsys.readouterr().out
    assert cli_main(["dataset-info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layout"] == "phantom" and info["cases_per_class"] == {"bilateral": 2, "skullfix": 2}
    assert info["grids"]["skullfix"]["shape"] == [32, 32, 32]
    assert info["grids"]["skullfix"]["spacing_mm"] == [7.5, 7.5, 7.5]
    assert cli_main(["dataset-info", str(out)]) == 0
    assert "bilateral" in capsys.readouterr().out
    assert cli_main(["dataset-info", str(tmp_path / "nowhere")]) == 2
    assert f"{tmp_path / 'nowhere'}: no such folder" in capsys.readouterr().err


def test_cli_download_without_network_exits_non_zero(tmp_path, capsys, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    offline = dl.DatasetSource("skullfix", "skullfix", (dl.Archive(f"http://127.0.0.1:{port}/s.zip", "s.zip"),))
    monkeypatch.setitem(dl.SOURCES, "skullfix", offline)
    assert cli_main(["download", "skullfix", "--root", str(tmp_path), "--timeout", "5"]) == 1
    assert f"cannot reach 127.0.0.1:{port}: no network?" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["download.py", "make_phantoms.py"])
def test_data_scripts_show_help(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "data_scripts" / script), run_name="__main__")
    assert exit_info.value.code == 0
    assert "usage: cranialkit" in capsys.readouterr().out


@pytest.mark.slow
def test_make_phantoms_script_runs_as_a_program(tmp_path):
    out = tmp_path / "ph"
    result = subprocess.run([sys.executable, str(REPO / "data_scripts" / "make_phantoms.py"), "--n-subjects", "1",
                             "--resolution", "32", "--classes", "random_1", "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert load_dataset(out).classes() == ["random_1"]

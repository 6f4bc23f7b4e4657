"""Execute the notebook series headless (papermill) and write a browsable index of the results.

Used by the README's main job (``make notebooks`` → ``cranialkit run-notebooks``) at default parameters, and by
the test suite in smoke mode. A notebook can mark what the index shows: a code cell tagged ``key-figure`` gives
the thumbnail (its first image; else the notebook's last image), a cell tagged ``results-table`` gives an HTML
table copied into the index.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
import numpy as np
from jupyter_client.manager import AsyncKernelManager

from cranialkit.jobs import atomic_write_text

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


class LocalKernelManager(AsyncKernelManager):
    """A kernel manager that talks to its kernel over local (IPC) sockets instead of TCP ports where the system
    has them (POSIX): the kernel is on the same machine, no port is opened, and the kernel has no reason to warn
    about unencrypted traffic for every notebook."""

    def __init__(self, **kwargs):
        kwargs.setdefault("transport", "ipc" if os.name == "posix" else "tcp")
        super().__init__(**kwargs)

    async def _async_interrupt_kernel(self) -> None:
        """No interrupt before the shutdown request of a finished notebook: the kernel is idle, and a SIGINT that
        meets it between two messages only prints "KeyboardInterrupt caught in kernel" into the job's output."""
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()


@dataclass
class NotebookRun:
    """The outcome of one executed notebook."""

    name: str
    ok: bool
    seconds: float
    output: str
    html: str | None = None
    error: str | None = None
    key_figure: str | None = None
    tables: list[str] = field(default_factory=list)


def list_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The series in order (``NN_topic.ipynb``)."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


def parameters_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """Code cells tagged ``parameters`` (papermill injects its values after the first)."""
    return [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]


def image_outputs(nb: nbformat.NotebookNode, tag: str | None = None) -> list[bytes]:
    """PNG images shown by a notebook's code cells (only cells with ``tag`` when given), as bytes."""
    images = []
    for cell in nb.cells:
        if cell.cell_type != "code" or (tag and tag not in cell.metadata.get("tags", [])):
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data:
                images.append(base64.b64decode(data["image/png"]))
    return images


def image_is_blank(png: bytes, min_std: float = 2.0) -> bool:
    """True when a PNG is (nearly) one flat colour: its pixel standard deviation is below ``min_std`` (0–255)."""
    import matplotlib.image as mpimg

    pixels = mpimg.imread(io.BytesIO(png), format="png")
    scale = 255.0 if pixels.dtype.kind == "f" else 1.0
    return float(np.asarray(pixels[..., :3], dtype=float).std() * scale) < min_std


def _tables(nb: nbformat.NotebookNode) -> list[str]:
    tables = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "results-table" in cell.metadata.get("tags", []):
            for out in cell.get("outputs", []):
                if "text/html" in out.get("data", {}):
                    tables.append(out["data"]["text/html"])
    return tables


def _first_error(nb: nbformat.NotebookNode) -> str | None:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"{out.get('ename')}: {out.get('evalue')}"
    return None


def execute_notebook(
    path: Path,
    out_dir: Path,
    parameters: dict | None = None,
    timeout_s: int = 3600,
    export_html: bool = True,
) -> NotebookRun:
    """Run one notebook with papermill into ``out_dir`` (and an HTML copy); never raises for a failing cell."""
    import papermill

    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    start = time.perf_counter()
    error = None
    # A kernel that inherits MPLBACKEND=agg shows no figures: the notebook's inline backend must be used.
    saved_backend = os.environ.pop("MPLBACKEND", None)
    try:
        papermill.execute_notebook(
            str(path),
            str(output),
            parameters=parameters or {},
            kernel_name="python3",
            cwd=str(path.parent),
            progress_bar=False,
            execution_timeout=timeout_s,
            kernel_manager_class=LocalKernelManager,
        )
    except Exception as exc:  # papermill raises PapermillExecutionError for a failing cell
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    finally:
        if saved_backend is not None:
            os.environ["MPLBACKEND"] = saved_backend
    seconds = time.perf_counter() - start
    run = NotebookRun(name=path.stem, ok=error is None, seconds=round(seconds, 1), output=str(output), error=error)
    if output.exists():
        nb = nbformat.read(output, as_version=4)
        run.error = run.error or _first_error(nb)
        run.ok = run.error is None
        tagged, every = image_outputs(nb, "key-figure"), image_outputs(nb)
        key_image = tagged[0] if tagged else (every[-1] if every else None)
        if key_image is not None:
            figure = out_dir / "figures" / f"{path.stem}.png"
            figure.parent.mkdir(exist_ok=True)
            figure.write_bytes(key_image)
            run.key_figure = str(figure)
        run.tables = _tables(nb)
        if export_html:
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter().from_notebook_node(nb)
            html_path = output.with_suffix(".html")
            atomic_write_text(html_path, body)
            run.html = str(html_path)
    return run


INDEX_STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 1400px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 14px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px; min-width: 0; }
.card h3 { margin: 0 0 4px 0; font-size: 1em; word-break: break-word; }
.card img { display: block; width: 100%; height: auto; max-height: 360px; object-fit: contain; margin-top: 8px; }
.status { font-size: 0.85em; color: #444; }
.failed { color: #b00020; font-weight: bold; }
.tables { margin-top: 2em; }
.table { overflow-x: auto; max-width: 100%; margin-bottom: 1.5em; }
table.dataframe td, table.dataframe th { padding: 2px 6px; border: 1px solid #ccc; font-size: 0.85em; }
"""


def write_index(runs: list[NotebookRun], out_dir: Path, title: str = "cranialkit — executed notebooks") -> Path:
    """Write ``out_dir/index.html``: one card per executed notebook (name, status, time, key figure) in a grid that
    reflows with the window's width, then the notebooks' results tables below it, each scrolling on its own when
    it is wider than the page."""
    out_dir = Path(out_dir)
    cards, tables = [], []
    for run in runs:
        status = ('<span class="ok">ok</span>' if run.ok
                  else f'<span class="failed">FAILED — {html.escape(run.error or "")}</span>')
        name = (f'<a href="{Path(run.html).name}">{html.escape(run.name)}</a>' if run.html
                else html.escape(run.name))
        figure = (f'<img src="figures/{Path(run.key_figure).name}" alt="key figure of {html.escape(run.name)}">'
                  if run.key_figure else "")
        cards.append(f'<div class="card"><h3>{name}</h3><div class="status">{status} · {run.seconds:.0f} s · '
                     f'<a href="{Path(run.output).name}">ipynb</a></div>{figure}</div>')
        if run.tables:
            body = "".join(f'<div class="table">{t}</div>' for t in run.tables)
            tables.append(f"<h3>{html.escape(run.name)}</h3>{body}")
    n_ok = sum(r.ok for r in runs)
    results = f'<div class="tables"><h2>Results tables</h2>{"".join(tables)}</div>' if tables else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{INDEX_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Generated {time.strftime('%Y-%m-%d %H:%M')}; {n_ok} of {len(runs)} notebooks ran without error.</p>
<div class="cards">{''.join(cards)}</div>{results}</body></html>
"""
    index = out_dir / "index.html"
    atomic_write_text(index, page)
    atomic_write_text(out_dir / "runs.json", json.dumps([asdict(r) for r in runs], indent=2))
    return index


def run_series(
    out_dir: Path,
    notebooks: list[Path] | None = None,
    parameters: dict | None = None,
    resume: bool = True,
    timeout_s: int = 3600,
) -> list[NotebookRun]:
    """Execute the notebooks in order, then write the index.

    With ``resume``, a notebook whose executed copy is newer than its source and ran without error is kept,
    not run again (an interrupted main job continues where it stopped).
    """
    out_dir = Path(out_dir)
    previous = {}
    if resume and (out_dir / "runs.json").exists():
        previous = {r["name"]: NotebookRun(**r) for r in json.loads((out_dir / "runs.json").read_text())}
    runs = []
    for path in notebooks or list_notebooks():
        old = previous.get(path.stem)
        if old and old.ok and Path(old.output).exists() and os.path.getmtime(old.output) > os.path.getmtime(path):
            print(f"[skip] {path.name}: already executed ({old.seconds:.0f} s)", flush=True)
            runs.append(old)
            continue
        print(f"[run ] {path.name} ...", flush=True)
        run = execute_notebook(path, out_dir, parameters, timeout_s=timeout_s)
        print(f"[{'ok' if run.ok else 'FAIL'}  ] {path.name}: {run.seconds:.0f} s {run.error or ''}", flush=True)
        runs.append(run)
        write_index(runs, out_dir)  # the index is usable while the series runs
    write_index(runs, out_dir)
    return runs

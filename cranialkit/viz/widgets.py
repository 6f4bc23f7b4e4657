"""Interactive viewers (ipywidgets) as thin shells over pure figure functions.

Taught in notebook 13_visualize_reconstructions.

- :func:`slice_view` — the pure function: orthogonal slices of one case with coloured overlays (it draws with
  :func:`cranialkit.viz.slices.show_slices`). Tests and scripts call it directly.
- :class:`SliceViewer` — a case/method dropdown, one slider per array axis (i, j, k) and a checkbox per overlay;
  every change redraws :func:`slice_view` into an ``Output`` widget.
- :class:`RenderViewer` — a case/method dropdown and a camera dropdown over static 3D renders
  (:func:`cranialkit.viz.render3d.render_reconstruction`), cached per (case, camera) because meshing a 512³ scan
  takes seconds.

A "case" is a dict of masks on one grid, e.g. ``{"defective": ..., "implant": ..., "prediction": ...}``;
``cases`` maps a label such as ``"003 / geometric + registration"`` to one. The viewers work without a browser
(tests build them, change their values and read ``viewer.figure``); in JupyterLab display ``viewer.widget``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from matplotlib.figure import Figure
from scipy import ndimage

from cranialkit.viz.render3d import CAMERAS, render_reconstruction, show_image
from cranialkit.viz.slices import show_slices
from cranialkit.volume import Volume

Case = Mapping[str, np.ndarray | Volume]


def _shape(mask: np.ndarray | Volume) -> tuple[int, ...]:
    return tuple((mask.array if isinstance(mask, Volume) else np.asarray(mask)).shape)


def slice_view(
    volumes: Case,
    axis: str | int = "all",
    index: int | Sequence[int] | None = None,
    overlays: Sequence[str] | None = None,
    base: str | None = None,
    spacing: Sequence[float] | None = None,
    title: str | None = None,
) -> Figure:
    """Orthogonal slices of one case: ``volumes[base]`` in grey with ``overlays`` (names in ``volumes``) on top.

    ``axis``: "all" or one view ("axial", "coronal", "sagittal" or array axis 2, 1, 0). ``index``: the slice
    (i, j, k) in voxels (None = through the centre of the last overlay). ``base`` defaults to the first mask;
    ``overlays`` to all the others. ``spacing`` (mm) defaults to the Volumes' own.
    """
    if not volumes:
        raise ValueError("volumes: need at least one mask")
    names = list(volumes)
    base = names[0] if base is None else base
    if base not in volumes:
        raise ValueError(f"base: {base!r} is not one of {names}")
    chosen = [n for n in names if n != base] if overlays is None else list(overlays)
    missing = [n for n in chosen if n not in volumes]
    if missing:
        raise ValueError(f"overlays: {missing} not in the case's masks {names}")
    focus = chosen[-1] if chosen else None
    return show_slices(
        volumes[base],
        {n: volumes[n] for n in chosen},
        axes=axis,
        index=index,
        spacing=spacing,
        title=title,
        focus=focus,
    )


def _centre(case: Case, focus: str | None) -> tuple[int, int, int]:
    """Voxel centre of mass of the focus mask (else of the first mask; else the grid centre)."""
    for name in [focus, *case]:
        if name is None or name not in case:
            continue
        mask = case[name]
        array = np.asarray(mask.array if isinstance(mask, Volume) else mask).astype(bool)
        if array.any():
            return tuple(int(round(c)) for c in ndimage.center_of_mass(array))  # type: ignore[return-value]
    shape = _shape(next(iter(case.values())))
    return tuple(n // 2 for n in shape)  # type: ignore[return-value]


def _check_cases(cases: Mapping[str, Case]) -> None:
    if not cases:
        raise ValueError("cases: need at least one case (label -> dict of masks)")
    for label, case in cases.items():
        if not case:
            raise ValueError(f"cases[{label!r}]: no masks")
        shapes = {name: _shape(mask) for name, mask in case.items()}
        if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 3:
            raise ValueError(f"cases[{label!r}]: masks must be 3D and share one grid, got {shapes}")


class SliceViewer:
    """Orthogonal slices with overlays: a case/method dropdown, a slider per axis and a checkbox per overlay.

    ``cases``: label → {mask name → mask}. ``base``: the mask drawn in grey (default: each case's first);
    ``spacing`` (mm) overrides the Volumes' own. Display ``viewer.widget``; ``viewer.figure`` is the latest figure.
    """

    def __init__(self, cases: Mapping[str, Case], base: str | None = None, spacing: Sequence[float] | None = None):
        _check_cases(cases)
        self.cases = dict(cases)
        self.base = base
        self.spacing = spacing
        overlay_names = list(dict.fromkeys(n for case in cases.values() for n in list(case)[1:] if n != base))
        self.case = widgets.Dropdown(options=list(self.cases), description="case")
        self.sliders = tuple(
            widgets.IntSlider(
                min=0,
                max=1,
                value=0,
                description=f"{axis} ({view})",
                continuous_update=False,
                style={"description_width": "initial"},
            )
            for axis, view in zip("ijk", ("sagittal", "coronal", "axial"))
        )
        self.toggles = {n: widgets.Checkbox(value=True, description=n, indent=False) for n in overlay_names}
        self.output = widgets.Output()
        self.figure: Figure | None = None
        self.widget = widgets.VBox(
            [
                self.case,
                widgets.HBox(list(self.sliders)),
                widgets.HBox(list(self.toggles.values())),
                self.output,
            ]
        )
        self._reset_sliders()
        self.case.observe(self._on_case, names="value")
        for control in [*self.sliders, *self.toggles.values()]:
            control.observe(self._on_change, names="value")
        self.update()

    def _reset_sliders(self) -> None:
        case = self.cases[self.case.value]
        shape = _shape(next(iter(case.values())))
        centre = _centre(case, list(case)[-1])
        self._updating = True  # one redraw for the whole reset, not one per slider
        for slider, size, value in zip(self.sliders, shape, centre):
            slider.max = size - 1
            slider.value = int(np.clip(value, 0, size - 1))
        self._updating = False

    def _on_case(self, change: dict) -> None:
        self._reset_sliders()
        self.update()

    def _on_change(self, change: dict) -> None:
        if not self._updating:
            self.update()

    def current_figure(self) -> Figure:
        """The figure for the widgets' current values (pure: nothing is displayed)."""
        case = self.cases[self.case.value]
        base = self.base if self.base is not None else next(iter(case))
        overlays = [n for n in case if n != base and (n not in self.toggles or self.toggles[n].value)]
        index = tuple(s.value for s in self.sliders)
        return slice_view(case, "all", index, overlays, base=base, spacing=self.spacing, title=self.case.value)

    def update(self) -> Figure:
        """Redraw into the output widget; returns the new figure."""
        figure = self.current_figure()
        self.output.clear_output(wait=True)
        with self.output:
            display(figure)
        plt.close(figure)  # displayed; pyplot need not keep it
        self.figure = figure
        return figure


class RenderViewer:
    """Static 3D renders of several cases/methods: a case dropdown and a camera dropdown.

    ``cases``: label → {"defective": ..., "predicted_implant": ..., "true_implant": ...} (any subset; the keys are
    :func:`render_reconstruction`'s arguments). ``render_options`` go to it as well (spacing, window_size, ...).
    Renders are cached per (case, camera). Display ``viewer.widget``; ``viewer.image`` is the latest render.
    """

    def __init__(self, cases: Mapping[str, Mapping[str, np.ndarray | Volume]], camera: str = "auto", **render_options):
        _check_cases(cases)
        allowed = {"defective", "predicted_implant", "true_implant"}
        for label, case in cases.items():
            unknown = set(case) - allowed
            if unknown:
                raise ValueError(f"cases[{label!r}]: unknown keys {sorted(unknown)}; use {sorted(allowed)}")
        self.cases = dict(cases)
        self.render_options = render_options
        self.case = widgets.Dropdown(options=list(self.cases), description="case")
        self.camera = widgets.Dropdown(options=["auto", "implant", *CAMERAS], value=camera, description="camera")
        self.output = widgets.Output()
        self.image: np.ndarray | None = None
        self.figure: Figure | None = None
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self.widget = widgets.VBox([widgets.HBox([self.case, self.camera]), self.output])
        self.case.observe(lambda change: self.update(), names="value")
        self.camera.observe(lambda change: self.update(), names="value")
        self.update()

    def current_image(self) -> np.ndarray:
        """The render for the current case and camera (cached)."""
        key = (self.case.value, self.camera.value)
        if key not in self._cache:
            self._cache[key] = render_reconstruction(
                **self.cases[self.case.value],
                camera=self.camera.value,
                title=self.case.value,
                **self.render_options,
            )
        return self._cache[key]

    def update(self) -> np.ndarray:
        """Render (or take from the cache) and show in the output widget; returns the image."""
        image = self.current_image()
        figure = show_image(image)
        self.output.clear_output(wait=True)
        with self.output:
            display(figure)
        plt.close(figure)  # displayed in the widget; pyplot need not keep it
        self.image, self.figure = image, figure
        return image

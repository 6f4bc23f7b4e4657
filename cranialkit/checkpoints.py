"""Where trained models live: one naming convention for every generator, autoencoder and reconstruction network.

Taught in notebooks 04_vae (generators) and 10_unet_training (reconstruction runs).

A trained model is named by what made it: ``<name>_r<resolution>_s<steps>_<digest>``, where ``digest`` is a short
hash of every setting that changes the result (model configuration, batch size, learning rate, seed, network
version) and of the training data (:func:`data_fingerprint`). The same settings on the same data give the same name,
so a later notebook finds exactly what an earlier one trained; a change of any setting or of the data gives a new
name instead of silently reusing another model.

Under the data directory (:func:`cranialkit.config.data_dir`)::

    generators/<name>_r<res>_s<steps>_<digest>.pt     a generator or autoencoder (one training checkpoint file)
    runs/<name>_r<res>_s<steps>_<digest>/              a reconstruction run: best.pt, last.pt, history.json

:func:`checkpoint_path` names them; :func:`find_checkpoints` lists what exists (newest last), for a notebook that
takes "the latest model of this kind" rather than one exact recipe.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cranialkit.config import data_dir
from cranialkit.errors import CheckpointError

# kind → folder under the data directory, and whether a checkpoint is one file or a run folder.
KINDS: dict[str, str] = {"generator": "generators", "reconstruction": "runs"}
RUN_CHECKPOINT = "best.pt"  # the file of a reconstruction run that inference loads


def data_fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of training arrays (their shapes and which voxels are set, threshold 0.5): a model trained on
    other cases is another model, even when every setting is the same."""
    if not arrays:
        raise ValueError("data_fingerprint needs at least one array")
    digest = hashlib.sha1()
    for array in arrays:
        x = np.asarray(array)
        digest.update(str(x.shape).encode())
        digest.update(np.packbits(x > 0.5).tobytes())
    return digest.hexdigest()[:10]


def settings_digest(settings: Mapping) -> str:
    """A short hash of JSON-serialisable ``settings`` (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def checkpoint_name(name: str, settings: Mapping, resolution: int, steps: int, data: str | None = None) -> str:
    """``<name>_r<resolution>_s<steps>_<digest>``; ``data`` is a :func:`data_fingerprint` hashed with the
    settings."""
    if not name or any(c in name for c in "/\\ "):
        raise ValueError(f"checkpoint name must be a plain word, got {name!r}")
    digest = settings_digest({"settings": dict(settings), "data": data})
    return f"{name}_r{int(resolution)}_s{int(steps)}_{digest}"


def checkpoint_path(kind: str, name: str, settings: Mapping, resolution: int, steps: int,
                    data: str | None = None) -> Path:
    """Where the model ``name`` trained with ``settings`` for ``steps`` at ``resolution``³ on ``data`` lives.

    ``kind`` = ``"generator"`` gives a ``.pt`` file under ``generators/``; ``"reconstruction"`` gives a run folder
    under ``runs/`` (the trainer writes ``best.pt`` and ``last.pt`` into it).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; choose one of {sorted(KINDS)}")
    stem = checkpoint_name(name, settings, resolution, steps, data)
    folder = data_dir() / KINDS[kind]
    return folder / (f"{stem}.pt" if kind == "generator" else stem)


def find_checkpoints(kind: str, name: str, resolution: int | None = None) -> list[Path]:
    """Existing checkpoints of ``name`` (at ``resolution`` when given), oldest first: ``.pt`` files for generators,
    the ``best.pt`` of each run for reconstruction networks."""
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; choose one of {sorted(KINDS)}")
    folder = data_dir() / KINDS[kind]
    pattern = f"{name}_r{resolution if resolution is not None else '*'}_s*_*"
    if kind == "generator":
        found = [p for p in folder.glob(f"{pattern}.pt") if p.is_file()]
    else:
        found = [p / RUN_CHECKPOINT for p in folder.glob(pattern) if (p / RUN_CHECKPOINT).is_file()]
    # The name must match exactly: "vae" must not find "vae_autoencoder_r32_...".
    found = [p for p in found if (p.stem if kind == "generator" else p.parent.name).rsplit("_", 3)[0] == name]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def generated_folder(checkpoint: str | Path) -> Path:
    """Where the samples of the model in ``checkpoint`` are written as a dataset: ``<data dir>/generated/<stem>``
    — one folder per trained model, so a retrained model never mixes its samples with an older one's."""
    return data_dir() / "generated" / Path(checkpoint).stem


# --------------------------------------------------------------------------------------------- reading safely

# What each kind of checkpoint is, in the words an error message uses, and where such a file comes from.
EXPECTED: dict[str, str] = {
    "reconstruction": "a cranialkit reconstruction checkpoint; give the best.pt or last.pt of a `cranialkit train` "
                      "run",
    "generator": "a generator checkpoint; give a file written by `cranialkit train-generator` or Generator.save",
}
GENERATOR_NAMES = {"vae": "VAE", "wgan_gp": "WGAN-GP", "introvae": "IntroVAE", "soft_introvae": "Soft-IntroVAE",
                   "vqvae": "VQ-VAE", "ldm_vqvae": "latent diffusion (VQ-VAE)", "ldm_vae": "latent diffusion (KL)"}


def checkpoint_kind(state: object) -> str | None:
    """``"reconstruction"`` or ``"generator"`` for a loaded cranialkit checkpoint, None for anything else."""
    if isinstance(state, dict) and {"model", "model_config"} <= set(state):
        return "reconstruction"
    if isinstance(state, dict) and {"name", "config", "state_dict"} <= set(state):
        return "generator"
    return None


def describe_checkpoint(state: object) -> str:
    """What a loaded checkpoint holds, in words: "a cranialkit reconstruction checkpoint (size compact, 64³, …)",
    "a VAE generator checkpoint (resolution 32, …)", or what it is not."""
    kind = checkpoint_kind(state)
    if kind == "reconstruction":
        config = state["model_config"] if isinstance(state["model_config"], dict) else {}
        shape = config.get("shape") or []
        grid = f"{shape[0]}³" if len(set(shape)) == 1 else "×".join(map(str, shape))
        parts = [f"size {config.get('size', '?')}", grid, f"predicts the {config.get('target', '?')}"]
        parts += [f"{key} {value}" for key, value in config.items() if key not in ("size", "shape", "target")]
        if "step" in state:
            parts.append(f"step {state['step']}")
        stage = "fine-stage " if "fine_config" in state else ""
        return f"a cranialkit {stage}reconstruction checkpoint ({', '.join(parts)})"
    if kind == "generator":
        name = str(state["name"])
        config = state["config"] if isinstance(state["config"], dict) else {}
        details = [f"resolution {config['resolution']}"] if "resolution" in config else []
        if "step" in state:
            details.append(f"step {state['step']}")
        suffix = f" ({', '.join(details)})" if details else ""
        return f"a {GENERATOR_NAMES.get(name, name)} generator checkpoint{suffix}"
    if isinstance(state, dict) and state and all(hasattr(v, "shape") for v in state.values()):
        return "a bare PyTorch state dict (weights without the settings cranialkit needs to rebuild the network)"
    return f"a PyTorch file holding a {type(state).__name__}, not a cranialkit checkpoint"


def read_checkpoint(path: str | os.PathLike, expect: str | None = None, map_location: str | object = "cpu") -> dict:
    """Load a checkpoint safely (``torch.load(..., weights_only=True)``: tensors and plain data only, no code) and,
    with ``expect`` (a key of :data:`EXPECTED`), check that it is that kind.

    Every problem raises :class:`~cranialkit.errors.CheckpointError` naming the file and saying what it is: missing,
    empty, truncated or corrupt, not a PyTorch file at all, holding Python objects (refused: loading them could run
    code, so never load such a file with ``weights_only=False``), or a checkpoint of another kind.
    """
    import pickle
    import warnings
    import zipfile

    path = check_checkpoint_file(path, expect)  # cheap checks first: torch takes a second to import
    import torch

    needed = EXPECTED.get(expect, "a cranialkit checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses: we say why
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():  # a class or function to import: code, not data
            raise CheckpointError(f"{path}: holds Python objects besides weights and settings, which cranialkit "
                                  f"refuses to load (they could run code); use a checkpoint written by cranialkit"
                                  ) from exc
        raise CheckpointError(f"{path}: not a checkpoint (not a file written by torch.save); {_advice(expect)}"
                              ) from exc
    except Exception as exc:  # noqa: BLE001 - torch reports broken files with many exception types
        zipped = zipfile.is_zipfile(path)
        problem = "truncated or corrupt checkpoint" if zipped or _starts_like_zip(path) else \
            "not a checkpoint (not a file written by torch.save)"
        raise CheckpointError(f"{path}: {problem} ({type(exc).__name__}); {_advice(expect)}") from exc
    if expect is not None and checkpoint_kind(state) != expect:
        raise CheckpointError(f"{path}: is {describe_checkpoint(state)}, not {needed}")
    return state


def check_checkpoint_file(path: str | os.PathLike, expect: str | None = None) -> Path:
    """Raise :class:`~cranialkit.errors.CheckpointError` when ``path`` is missing, a folder or empty — cheap checks
    (no torch) that a command makes before loading its network."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; give the checkpoint file in it (e.g. {path / RUN_CHECKPOINT})")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; {_advice(expect)}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint; it was not written to the end — "
                              f"{_advice(expect)}")
    return path


def _starts_like_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _advice(expect: str | None) -> str:
    if expect == "reconstruction":
        return "give the best.pt or last.pt of a `cranialkit train` run"
    if expect == "generator":
        return "give a file written by `cranialkit train-generator`"
    return "check the path, or train again"


def weights_digest(module) -> str:
    """A short SHA-256 of a network's weights (names, dtypes, shapes and values of its state dict): the identity of
    a trained model, whether it came from a file or from memory."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]

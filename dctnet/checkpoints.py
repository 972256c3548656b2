"""Saving and loading model files safely: safetensors + JSON for users, rosinality ``.pt`` read-only.

Nothing here unpickles arbitrary objects: ``.pt`` files are read with ``torch.load(weights_only=True)``
(argparse ``Namespace``, which rosinality stores as ``args``, is the only extra class allowed), and
our own exports are safetensors, which cannot carry code. Writes are atomic.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dctnet.atomic import replace_atomically, write_text_atomic

FORMAT_VERSION = "1"


class CheckpointError(ValueError):
    """A model file is missing, of another format or version, or does not fit the architecture."""


def save_model(path: str | Path, state: dict[str, torch.Tensor], kind: str, arch: dict[str, Any],
               extra: dict[str, Any] | None = None) -> Path:
    """Write ``state`` as safetensors plus ``<stem>.json`` describing the architecture, both atomically."""
    path = Path(path)
    header = {"format_version": FORMAT_VERSION, "kind": kind, "arch": arch, **(extra or {})}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    broken = non_finite(tensors)
    if broken:
        raise CheckpointError(f"refusing to write {path}: non-finite values in {len(broken)} tensors "
                              f"(first: {broken[:3]}); the model diverged")
    replace_atomically(path, lambda temporary: save_file(tensors, temporary, metadata={"dctnet": json.dumps(header)}))
    write_text_atomic(path.with_suffix(".json"), json.dumps(header, indent=2) + "\n")
    return path


def load_model_file(path: str | Path, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read one of our safetensors exports; checks its format version and (optionally) its kind."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {path} does not exist")
    try:
        state = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    if "dctnet" not in metadata:
        raise CheckpointError(f"{path}: safetensors file without dctnet metadata (not exported by dctnet)")
    try:
        header = json.loads(metadata["dctnet"])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: its dctnet header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: its dctnet header is not a JSON object")
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {header.get('format_version')!r}, this dctnet reads {FORMAT_VERSION!r}; "
            "re-export it with the dctnet version that wrote it"
        )
    if kind is not None and header.get("kind") != kind:
        raise CheckpointError(f"{path}: holds a {header.get('kind')!r} model, expected {kind!r}")
    broken = non_finite(state)
    if broken:
        raise CheckpointError(f"{path}: non-finite (NaN/inf) values in {len(broken)} tensors (first: {broken[:3]}); "
                              "this model is broken, re-export it from a healthy checkpoint")
    return state, header


def non_finite(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or inf."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def load_torch_file(path: str | Path) -> dict[str, Any]:
    """``torch.load`` that cannot run code; allows the argparse Namespace rosinality saves as ``args``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{path}: refused or unreadable checkpoint ({type(error).__name__}: {error}). "
            "Only tensors, containers and argparse.Namespace are accepted."
        ) from error


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a message that lists what is missing or unexpected."""
    result = module.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing {len(result.missing_keys)} keys (first: {result.missing_keys[:3]})")
    if result.unexpected_keys:
        problems.append(f"unexpected {len(result.unexpected_keys)} keys (first: {result.unexpected_keys[:3]})")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: " + "; ".join(problems))

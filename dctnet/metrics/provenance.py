"""Which model made a folder of stylized images: a ``provenance.json`` beside the images, read by the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dctnet.atomic import write_text_atomic
from dctnet.checkpoints import load_model_file

FILE = "provenance.json"


def write_provenance(folder: str | Path, model: str | Path, **facts: Any) -> Path:
    """Record the model file's header (kind, iterations, recipe) and ``facts`` (e.g. the training data) for ``folder``."""
    _, header = load_model_file(model)
    record = {"model": str(model), **{k: header[k] for k in ("kind", "iterations", "loss_recipe") if k in header},
              **facts}
    return write_text_atomic(Path(folder) / FILE, json.dumps(record, indent=2) + "\n")


def describe_provenance(folder: str | Path) -> str:
    """One line for the report: kind, iterations, recipe, data and model file; 'unknown' without a record."""
    path = Path(folder) / FILE
    if not path.is_file():
        return f"unknown (no {FILE} in {folder})"
    record = json.loads(path.read_text())
    parts = [str(record.get("kind", "?"))]
    if "iterations" in record:
        parts.append(f"{record['iterations']} iterations")
    parts += [f"{k} {v}" for k, v in record.items() if k not in ("kind", "iterations", "model")]
    return ", ".join(parts) + f" ({record['model']})"

"""Atomic file writes: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def temporary_beside(path: Path, suffix: str = "") -> str:
    """A new temporary file in ``path``'s folder with the permissions a plain write would give (umask applied)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600
    return temporary


def replace_atomically(path: str | os.PathLike, write: Callable[[str], object], suffix: str = "") -> Path:
    """``write(temporary)`` a file beside ``path``, then rename it over ``path``: readers see the old or the new
    file, never half of one; a failed write leaves the old file and no temporary behind."""
    path = Path(path)
    temporary = temporary_beside(path, suffix)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`replace_atomically`)."""
    return replace_atomically(path, lambda temporary: Path(temporary).write_text(text))


def csv_text(header: list[str], rows: list[list] | list[dict], dict_rows: bool = False) -> str:
    """CSV text (header + rows) for :func:`write_text_atomic`."""
    import csv
    import io

    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=header) if dict_rows else csv.writer(buffer)
    if dict_rows:
        writer.writeheader()
    else:
        writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()

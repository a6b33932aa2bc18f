"""Atomic model folders and their content hashes (DESIGN.md rule 7). No Django."""

from __future__ import annotations

import hashlib
from pathlib import Path

from core.files import TEMP_PREFIX, atomic_output_dir

# Atomic folders live in core/files.py (no Django there either); re-exported for the trainers.
__all__ = ["TEMP_PREFIX", "atomic_output_dir", "dir_sha256"]


def dir_sha256(path: Path) -> str:
    """sha256 over sorted (relative path, file contents) of every file below `path`.

    Independent of the folder's own name, its location and file times; each entry is framed
    with its length so ("ab", "c") and ("a", "bc") cannot collide.
    """
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for file in files:
        rel = file.relative_to(root).as_posix().encode("utf-8")
        digest.update(len(rel).to_bytes(8, "big") + rel)
        digest.update(file.stat().st_size.to_bytes(8, "big"))
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()

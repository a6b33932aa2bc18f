"""Atomic model folders and their content hashes (DESIGN.md rule 7). No Django."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Temp folders start with this, so a sweep (or a person) can tell a crashed write from a model.
TEMP_PREFIX = ".tmp-"


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_output_dir(final_dir: Path) -> Iterator[Path]:
    """Yield a fresh sibling temp folder; on success fsync it and rename it to `final_dir`.

    On any exception (KeyboardInterrupt and TrainingCancelled included) the temp folder is
    removed and the exception re-raised; `final_dir` is untouched. Raises FileExistsError
    if `final_dir` already exists (a checkpoint folder is written once). The temp folder is
    in the same parent, so the final rename is atomic on one filesystem: a crash at any
    point leaves either nothing at `final_dir` or the complete folder.
    """
    final_dir = Path(final_dir)
    if final_dir.exists():
        raise FileExistsError(f"{final_dir} already exists; a model folder is written once")
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{final_dir.name}-", dir=final_dir.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        os.rename(tmp, final_dir)  # fails (rather than merging) if final_dir appeared meanwhile
        _fsync_dir(final_dir.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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

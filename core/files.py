"""Atomic files and folders (DESIGN.md rule 7): written to a temporary sibling, fsynced, renamed
into place. A crash at any point leaves the old file (or nothing), never half a file. No Django
imports: `training/ml` writes its model folders with these too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Temporary files and folders start with this, so a sweep (or a person) can tell a crashed
# write from a finished one.
TEMP_PREFIX = ".tmp-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(dirpath))


def temp_sibling(path: Path) -> Path:
    """A fresh temporary name beside `path` (same folder, so the final rename is atomic)."""
    path = Path(path)
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{uuid.uuid4().hex}")


@contextmanager
def atomic_output_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it onto `path`.
    On any exception the temporary file is removed and `path` is untouched."""
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_output_file(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(source: Path, target: Path) -> None:
    with atomic_output_file(target) as tmp:
        shutil.copyfile(source, tmp)


@contextmanager
def atomic_output_dir(final_dir: Path) -> Iterator[Path]:
    """Yield a fresh sibling temp folder; on success fsync it and rename it to `final_dir`.

    On any exception (KeyboardInterrupt and cancellation included) the temp folder is removed
    and the exception re-raised; `final_dir` is untouched. Raises FileExistsError if
    `final_dir` already exists (a model folder is written once). The temp folder is in the
    same parent, so the final rename is atomic on one filesystem: a crash at any point leaves
    either nothing at `final_dir` or the complete folder.
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


def leftovers_remove(final: Path) -> None:
    """Delete what a crashed attempt to write `final` left: its temporary siblings, and `final`
    itself (renamed into place just before a crash, so no database row points at it yet)."""
    final = Path(final)
    # Only the names this module makes for `final` ("name-..." folders, "name.<uuid>" files):
    # a bare prefix match would take ".tmp-12-..." of a live run 12 for a leftover of run 1.
    mine = (f"{TEMP_PREFIX}{final.name}-", f"{TEMP_PREFIX}{final.name}.")
    if final.parent.is_dir():
        for sibling in final.parent.iterdir():
            if sibling.name.startswith(mine):
                if sibling.is_dir():
                    shutil.rmtree(sibling, ignore_errors=True)
                else:
                    sibling.unlink(missing_ok=True)
    if final.is_dir():
        shutil.rmtree(final)
    elif final.exists():
        final.unlink()


def _final_name(temp_name: str) -> str | None:
    """The name a temporary entry was going to become: ".tmp-NAME.<uuid hex>" (a file) or
    ".tmp-NAME-<mkdtemp suffix>" (a folder); None for a name this module did not make."""
    if not temp_name.startswith(TEMP_PREFIX):
        return None
    rest = temp_name[len(TEMP_PREFIX) :]
    stem, dot, tail = rest.rpartition(".")
    if dot and len(tail) == 32 and all(c in "0123456789abcdef" for c in tail):
        return stem
    stem, dash, tail = rest.rpartition("-")
    return stem if dash and tail else None


def temp_entries(root: Path, *, depth: int) -> list[tuple[Path, str]]:
    """The temporary files and folders (unfinished or crashed writes) at most `depth` levels
    below `root`, each with the name it was going to get."""
    found: list[tuple[Path, str]] = []
    root = Path(root)
    if depth < 1 or not root.is_dir():
        return found
    for entry in root.iterdir():
        final = _final_name(entry.name)
        if final is not None:
            found.append((entry, final))
        elif entry.is_dir() and not entry.is_symlink():
            found.extend(temp_entries(entry, depth=depth - 1))
    return found


def path_remove(path: Path) -> None:
    """Remove a file or a folder tree (gone already is fine)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)

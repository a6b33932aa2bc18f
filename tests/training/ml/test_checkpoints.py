import os

import pytest

from training.ml.backbones import default_minilm_dir
from training.ml.checkpoints import atomic_output_dir, dir_sha256


def _write(folder, files):
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_success_renames_the_complete_folder_into_place(tmp_path):
    final = tmp_path / "models" / "rm-1"
    with atomic_output_dir(final) as work:
        assert work != final and work.parent == final.parent
        assert not final.exists()  # nothing loadable while writing
        _write(work, {"config.json": b"{}", "sub/weights.bin": b"\x00\x01"})
    assert (final / "config.json").read_bytes() == b"{}"
    assert (final / "sub" / "weights.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in final.parent.iterdir()) == ["rm-1"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_leaves_nothing(tmp_path, error):
    final = tmp_path / "rm-2"
    with pytest.raises(type(error)):
        with atomic_output_dir(final) as work:
            _write(work, {"config.json": b"{}"})
            raise error
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_final_folder_is_never_overwritten(tmp_path):
    final = tmp_path / "rm-3"
    _write(final, {"config.json": b"old"})
    with pytest.raises(FileExistsError):
        with atomic_output_dir(final):
            pass
    assert (final / "config.json").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["rm-3"]


def test_dir_sha256_depends_on_paths_and_contents_only(tmp_path):
    files = {"a.txt": b"hello", "sub/b.bin": b"\x00" * 1000}
    one, two = tmp_path / "one", tmp_path / "elsewhere" / "two"
    _write(one, files)
    _write(two, dict(reversed(list(files.items()))))
    os.utime(two / "a.txt", (1, 1))
    digest = dir_sha256(one)
    assert len(digest) == 64
    assert dir_sha256(two) == digest == dir_sha256(one)

    (two / "a.txt").write_bytes(b"hellO")
    assert dir_sha256(two) != digest
    (two / "a.txt").write_bytes(b"hello")
    (two / "a.txt").rename(two / "c.txt")
    assert dir_sha256(two) != digest
    # moving bytes between files changes the hash even though the concatenation is equal
    three = tmp_path / "three"
    _write(three, {"a.txt": b"hel", "sub/b.bin": b"lo" + b"\x00" * 1000})
    assert dir_sha256(three) != digest


def test_default_minilm_dir_is_the_packaged_model():
    folder = default_minilm_dir()
    assert folder.name == "model"
    assert (folder / "config.json").is_file()
    assert (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()

"""gastown_ft.atomic: a failed write leaves the old file or directory as it was and nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gastown_ft import atomic


class Boom(Exception):
    pass


def test_write_text_and_json_replace_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"  # the parent is created
    atomic.write_text(path, "old")
    atomic.write_json(path, {"b": 1, "a": [2]}, sort_keys=True)
    assert path.read_text() == json.dumps({"a": [2], "b": 1})  # exactly json.dumps: no newline added
    atomic.write_bytes(path, b"\x00raw")
    assert path.read_bytes() == b"\x00raw"
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "table.parquet"
    path.write_text("old")
    with pytest.raises(Boom), atomic.atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".")  # hidden, same filesystem
        tmp.write_text("half of the new")
        raise Boom
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


def test_a_writer_that_never_created_the_temp_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    with pytest.raises(FileNotFoundError), atomic.atomic_path(path):
        pass  # e.g. a subprocess that exited without writing: nothing to put in place
    assert list(tmp_path.iterdir()) == []


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(params=["exchange", "rename aside"])
def swap(request, monkeypatch):
    """Both ways an old directory goes: one renameat2 exchange, or moved aside then renamed."""
    if request.param == "rename aside":
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    return request.param


def test_staged_dir_swaps_a_directory_in(tmp_path: Path, swap: str) -> None:
    target = tmp_path / "model"
    with atomic.staged_dir(target) as staged:
        (staged / "config.json").write_text("v1")
    with atomic.staged_dir(target) as staged:
        assert staged.is_dir() and not any(staged.iterdir())
        (staged / "sub").mkdir()
        (staged / "sub" / "weights").write_text("v2")
    assert _tree(target) == {"sub/weights": "v2"}  # the old files are gone
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staged or old directory left


def test_a_failure_while_staging_keeps_the_old_directory(tmp_path: Path, swap: str) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("v1")
    with pytest.raises(Boom), atomic.staged_dir(target) as staged:
        (staged / "config.json").write_text("half")
        raise Boom
    assert _tree(target) == {"config.json": "v1"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_owned_entries_are_replaced_and_the_others_kept(tmp_path: Path, swap: str) -> None:
    target = tmp_path / "splits"
    target.mkdir()
    (target / "data").mkdir()
    (target / "data" / "old.parquet").write_text("old")
    (target / "README.md").write_text("old card")
    (target / ".git").mkdir()
    (target / ".git" / "HEAD").write_text("ref")  # someone else's: it must survive
    with atomic.staged_dir(target, owned={"data", "README.md"}) as staged:
        (staged / "data").mkdir()
        (staged / "data" / "train.parquet").write_text("new")
        (staged / "README.md").write_text("new card")
    assert _tree(target) == {".git/HEAD": "ref", "README.md": "new card", "data/train.parquet": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["splits"]


def test_owned_refuses_a_target_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "splits"
    target.write_text("not a directory")
    with pytest.raises(ValueError, match="not a directory"), atomic.staged_dir(target, owned={"data"}):
        pass
    assert target.read_text() == "not a directory"
    assert [p.name for p in tmp_path.iterdir()] == ["splits"]


def test_a_symlink_at_the_target_is_replaced_and_what_it_pointed_at_kept(tmp_path: Path, swap: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("x")
    target = tmp_path / "model"
    target.symlink_to(elsewhere)
    with atomic.staged_dir(target) as staged:
        (staged / "config.json").write_text("v1")
    assert not target.is_symlink() and _tree(target) == {"config.json": "v1"}
    assert _tree(elsewhere) == {"keep": "x"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "model"]

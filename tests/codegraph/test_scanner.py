"""Input safety of the scanner: allowed roots, symlinks, ignored directories and .gitignore,
binary, huge and special files — every skip counted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from offload.apps.codegraph.errors import RepositoryParseError
from offload.apps.codegraph.parsing import Failed, parse_one
from offload.apps.codegraph.scanner import read_source, resolve_repository, scan


def write(path: Path, content: str | bytes = "x = 1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def test_repository_must_resolve_inside_an_allowed_root(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    (allowed / "repo").mkdir(parents=True)
    outside.mkdir()
    assert resolve_repository(allowed / "repo", [allowed]) == (allowed / "repo").resolve()
    with pytest.raises(RepositoryParseError, match="OFFLOAD_CODEGRAPH_ROOTS"):
        resolve_repository(outside, [allowed])
    with pytest.raises(RepositoryParseError, match="outside"):
        resolve_repository(allowed / "repo" / ".." / ".." / "outside", [allowed])
    # a symlink inside the root that points outside is judged by its target
    (allowed / "sneaky").symlink_to(outside)
    with pytest.raises(RepositoryParseError):
        resolve_repository(allowed / "sneaky", [allowed])
    with pytest.raises(RepositoryParseError, match="not a directory"):
        resolve_repository(write(allowed / "file.py"), [allowed])
    with pytest.raises(RepositoryParseError, match="empty"):
        resolve_repository("  ", [allowed])


def test_symlinks_that_leave_the_root_are_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    secret = write(tmp_path / "secret" / "keys.py", "TOKEN = 'x'\n")
    write(root / "app.py")
    (root / "leak.py").symlink_to(secret)
    (root / "leakdir").symlink_to(secret.parent, target_is_directory=True)
    write(root / "pkg" / "real.py")
    (root / "alias.py").symlink_to(root / "pkg" / "real.py")
    (root / "loop").symlink_to(root, target_is_directory=True)
    found = scan(root.resolve(), 1_000_000)
    assert sorted(f.path for f in found.files) == ["alias.py", "app.py", "pkg/real.py"]
    assert found.skipped["symlink_outside_root"] == 2
    assert found.skipped["symlink_dir"] == 1
    # and a listed file swapped for an escaping symlink later is refused when read
    (root / "app.py").unlink()
    (root / "app.py").symlink_to(secret)
    assert read_source(root.resolve(), "app.py", 1_000_000) == (None, "symlink_outside_root")


def test_vcs_dependencies_virtualenvs_and_gitignored_paths_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write(root / "main.py")
    write(root / ".git" / "hooks" / "x.py")
    write(root / "node_modules" / "lib" / "index.js")
    write(root / "env" / "pyvenv.cfg", "home = /usr\n")
    write(root / "env" / "lib" / "site.py")
    write(root / "venv" / "__init__.py")  # a package named venv (the stdlib has one)
    write(root / "build" / "gen.py")
    write(root / "logs" / "a.py")
    write(root / "src" / "keep.py")
    write(root / "src" / "drop.py")
    write(root / "src" / "gen_one.py")
    write(root / ".gitignore", "build/\n*.log\nlogs\n")
    write(root / "src" / ".gitignore", "drop.py\ngen_*.py\n!gen_one.py\n")
    found = scan(root.resolve(), 1_000_000)
    assert sorted(f.path for f in found.files) == ["main.py", "src/gen_one.py", "src/keep.py",
                                                  "venv/__init__.py"]
    assert found.skipped["ignored"] >= 5


def test_binary_huge_special_and_unknown_files_are_skipped_and_counted(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write(root / "ok.py")
    write(root / "blob.py", b"\x00\x01\x02binary")
    write(root / "huge.py", "x = 1\n" * 1000)
    write(root / "README.md", "# hi\n")
    write(root / "image.png", b"\x89PNG")
    os.mkfifo(root / "pipe.py")  # reading it would block forever
    found = scan(root.resolve(), max_file_bytes=1000)
    assert sorted(f.path for f in found.files) == ["blob.py", "ok.py"]
    assert found.skipped["too_large"] == 1
    assert found.skipped["unsupported"] == 2
    assert found.skipped["special"] == 1
    assert read_source(root.resolve(), "blob.py", 1000) == (None, "binary")


def test_too_many_files_is_a_clear_error(tmp_path: Path) -> None:
    for i in range(5):
        write(tmp_path / f"m{i}.py")
    with pytest.raises(RepositoryParseError, match="OFFLOAD_CODEGRAPH_MAX_FILES"):
        scan(tmp_path.resolve(), 1_000_000, max_files=3)


def test_a_file_that_fails_to_parse_is_reported_not_fatal(tmp_path: Path) -> None:
    write(tmp_path / "a.py")
    outcome = parse_one(str(tmp_path), "a.py", "cobol", 1_000_000)
    assert isinstance(outcome, Failed) and outcome.reason.startswith("error: ValueError")
    assert parse_one(str(tmp_path), "gone.py", "python", 1_000_000) == Failed("gone.py",
                                                                              "unreadable")

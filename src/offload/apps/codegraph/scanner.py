"""Find the source files of a repository, safely.

Input safety rules (each skip is counted, never silent):

* the repository path must resolve (symlinks included) inside one of the allowed roots
  (``OFFLOAD_CODEGRAPH_ROOTS``), and must be a readable directory;
* symlinked directories are never followed (no cycles, no escapes); a symlinked file is read
  only if its target lies inside the repository;
* only regular files are read (a FIFO or device would block or never end);
* ``.git``, ``node_modules``, virtualenvs (any directory holding ``pyvenv.cfg``), caches and
  everything matched by ``.gitignore`` files (nested ones included) and ``.git/info/exclude``
  are skipped;
* files with an unknown extension, files larger than ``codegraph_max_file_bytes`` and binary
  files (a NUL byte in the first 8 KiB) are skipped.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from offload.apps.codegraph.errors import RepositoryParseError
from offload.apps.codegraph.languages import language_of

#: Directory names never descended into (other virtualenvs are found by their pyvenv.cfg: a
#: package may well be called ``venv``, as the standard library's is).
SKIP_DIRS = frozenset({
    ".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".tox", ".nox",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".eggs", ".idea", ".vscode", "target",
    "bower_components", ".gradle", ".next", ".cache",
})
#: Small files that name modules and packages (go.mod, Cargo.toml, package.json).
MANIFESTS = frozenset({"go.mod", "Cargo.toml", "package.json"})
BINARY_PROBE = 8192


@dataclass(slots=True)
class SourceFile:
    path: str  # relative to the repository root, "/"-separated
    language: str
    size: int


@dataclass
class ScanResult:
    root: Path
    files: list[SourceFile] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    manifests: dict[str, bytes] = field(default_factory=dict)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def resolve_repository(repo_path: str | os.PathLike[str], roots: Iterable[Path]) -> Path:
    """The real path of ``repo_path`` if it is a directory inside one of ``roots``.

    Raises :class:`RepositoryParseError` naming the setting to change otherwise.
    """
    if not str(repo_path).strip():
        raise RepositoryParseError("repo_path is empty; give the directory of the repository")
    if "\x00" in str(repo_path):
        raise RepositoryParseError("repo_path contains a NUL byte")
    real = Path(os.path.realpath(os.path.expanduser(str(repo_path))))
    allowed = [Path(os.path.realpath(root)) for root in roots]
    if not any(real == root or real.is_relative_to(root) for root in allowed):
        raise RepositoryParseError(
            f"{repo_path} is outside the directories codegraph may read; add its parent to "
            f"OFFLOAD_CODEGRAPH_ROOTS (now: {', '.join(str(r) for r in allowed) or 'none'})",
            repo_path=str(repo_path),
        )
    if not real.is_dir():
        raise RepositoryParseError(f"{repo_path} is not a directory", repo_path=str(repo_path))
    if not os.access(real, os.R_OK | os.X_OK):
        raise RepositoryParseError(f"{repo_path} is not readable", repo_path=str(repo_path))
    return real


class _Ignores:
    """The .gitignore files met on the way down; the deepest match decides (as in git)."""

    def __init__(self, root: Path) -> None:
        self.specs: list[tuple[str, pathspec.GitIgnoreSpec]] = []
        exclude = root / ".git" / "info" / "exclude"
        if exclude.is_file():
            self._add("", exclude)

    def _add(self, base: str, file: Path) -> None:
        try:
            lines = file.read_text("utf-8", "replace").splitlines()
        except OSError:
            return
        spec = pathspec.GitIgnoreSpec.from_lines(lines)
        if len(spec):
            self.specs.append((base, spec))

    def enter(self, base: str, directory: Path) -> int:
        """Load ``directory``'s .gitignore; return the depth to restore when leaving it."""
        depth = len(self.specs)
        candidate = directory / ".gitignore"
        if candidate.is_file():
            self._add(base, candidate)
        return depth

    def leave(self, depth: int) -> None:
        del self.specs[depth:]

    def ignored(self, rel: str, is_dir: bool) -> bool:
        verdict = None
        for base, spec in self.specs:
            sub = rel[len(base) + 1:] if base else rel
            result = spec.check_file(sub + "/" if is_dir else sub)
            if result.include is not None:
                verdict = result.include
        return bool(verdict)


def scan(root: Path, max_file_bytes: int, max_files: int = 250_000) -> ScanResult:
    """Walk ``root`` (already resolved by :func:`resolve_repository`) and list its sources."""
    result = ScanResult(root=root)
    ignores = _Ignores(root)
    root_str = str(root)

    def walk(directory: Path, rel_dir: str) -> None:
        depth = ignores.enter(rel_dir, directory)
        try:
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                result.skipped["unreadable"] += 1
                return
            if any(e.name == "pyvenv.cfg" for e in entries) and rel_dir:
                result.skipped["ignored"] += 1
                return
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    if entry.is_symlink():
                        _symlink(entry, rel)
                    elif entry.is_dir(follow_symlinks=False):
                        if entry.name in SKIP_DIRS or ignores.ignored(rel, True):
                            result.skipped["ignored"] += 1
                        else:
                            walk(Path(entry.path), rel)
                    elif entry.is_file(follow_symlinks=False):
                        _file(entry, rel, entry.stat(follow_symlinks=False).st_size)
                    else:
                        result.skipped["special"] += 1
                except OSError:
                    result.skipped["unreadable"] += 1
        finally:
            ignores.leave(depth)

    def _symlink(entry: os.DirEntry, rel: str) -> None:
        target = os.path.realpath(entry.path)
        if not (target == root_str or target.startswith(root_str + os.sep)):
            result.skipped["symlink_outside_root"] += 1
            return
        info = os.stat(target)
        if stat.S_ISDIR(info.st_mode):
            result.skipped["symlink_dir"] += 1
        elif stat.S_ISREG(info.st_mode):
            _file(entry, rel, info.st_size)
        else:
            result.skipped["special"] += 1

    def _file(entry: os.DirEntry, rel: str, size: int) -> None:
        if entry.name in MANIFESTS and size <= 1_000_000 and not ignores.ignored(rel, False):
            try:
                result.manifests[rel] = Path(entry.path).read_bytes()
            except OSError:
                pass
        language = language_of(entry.name)
        if language is None:
            result.skipped["unsupported"] += 1
        elif ignores.ignored(rel, False):
            result.skipped["ignored"] += 1
        elif size > max_file_bytes:
            result.skipped["too_large"] += 1
        else:
            if len(result.files) >= max_files:
                raise RepositoryParseError(
                    f"{root} has more than {max_files} source files; raise "
                    "OFFLOAD_CODEGRAPH_MAX_FILES or ingest a subdirectory",
                    repo_path=str(root),
                )
            result.files.append(SourceFile(rel, language, size))

    walk(root, "")
    return result


def read_source(root: Path, rel: str, max_file_bytes: int) -> tuple[bytes | None, str]:
    """Read one listed file: (content, content hash) or (None, reason it was skipped)."""
    path = root / rel
    try:
        real = os.path.realpath(path)
        if not real.startswith(str(root) + os.sep):
            return None, "symlink_outside_root"
        with open(real, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None, "special"
            data = handle.read(max_file_bytes + 1)
    except OSError:
        return None, "unreadable"
    if len(data) > max_file_bytes:
        return None, "too_large"
    if b"\x00" in data[:BINARY_PROBE]:
        return None, "binary"
    return data, content_hash(data)


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()

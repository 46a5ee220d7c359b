"""Module and package names of a repository's files, from their paths and manifests.

Every file gets a *module*: the prefix of its symbols' qualified names, spelled the way its
language does (``json.decoder``, ``example.com/m/pkg``, ``com.acme.app``, ``mycrate::net``,
``src/utils/math``), and the *package* node that contains it, if any:

=========== ======================================================== ========================
language    module                                                   package node
=========== ======================================================== ========================
Python      dotted path through directories holding ``__init__.py``  each such directory
Go          import path of the directory (``go.mod`` module + dir)   the directory
Java        the declared ``package``                                 the declared package
Rust        crate name (``Cargo.toml``) + path below ``src/``        the crate
JS / TS     the path without its extension                           nearest ``package.json``
=========== ======================================================== ========================

Two files claiming one module (``a.py`` beside ``a/__init__.py``; two ``conftest.py`` outside
packages) are told apart deterministically: the first by path keeps the name, the others get
their full dotted path, then ``@<path>``.
"""

from __future__ import annotations

import json
import posixpath
import re
import tomllib
from dataclasses import dataclass, field

from offload.apps.codegraph.languages import family

SEPARATORS = {"rust": "::"}


@dataclass(slots=True)
class ModuleInfo:
    module: str
    sep: str
    package: str | None
    is_package_init: bool = False


@dataclass
class Naming:
    files: dict[str, ModuleInfo] = field(default_factory=dict)
    #: package qualified name -> parent package (or None: the repository contains it)
    packages: dict[str, str | None] = field(default_factory=dict)
    #: language -> module -> paths of the files forming it (Go and Java packages span files)
    modules: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: Go module path (go.mod) per directory holding a go.mod
    go_modules: dict[str, str] = field(default_factory=dict)


def _dir(path: str) -> str:
    return posixpath.dirname(path)


def _stem(path: str) -> str:
    name = posixpath.basename(path)
    return name[: name.index(".")] if "." in name else name


def name_files(
    files: dict[str, str],
    declared: dict[str, str | None],
    manifests: dict[str, bytes],
    root_name: str = "",
) -> Naming:
    """Name every file. ``files`` maps path -> language, ``declared`` path -> the package a
    Go or Java file declares, ``manifests`` path -> content of go.mod/Cargo.toml/package.json;
    ``root_name`` is the repository directory's name (a Python package when the repository
    is a package directory itself, holding an ``__init__.py``)."""
    naming = Naming()
    go_mods = {_dir(p): _go_module(c) for p, c in manifests.items() if p.endswith("go.mod")}
    naming.go_modules = {d: m for d, m in go_mods.items() if m}
    crates = {_dir(p): _crate_name(c, _dir(p)) for p, c in manifests.items()
              if p.endswith("Cargo.toml")}
    npm = {_dir(p): _npm_name(c, _dir(p)) for p, c in manifests.items()
           if p.endswith("package.json")}
    py_inits = {_dir(p) for p, lang in files.items()
                if lang == "python" and posixpath.basename(p) in ("__init__.py", "__init__.pyi")}

    claimed: dict[tuple[str, str], str] = {}
    for path in sorted(files):
        language = files[path]
        if language == "python":
            info = _python(path, py_inits, naming, root_name)
        elif language == "go":
            info = _go(path, naming.go_modules, declared.get(path), naming)
        elif language == "java":
            package = declared.get(path) or ""
            info = ModuleInfo(package, ".", package or None)
            if package:
                naming.packages.setdefault(package, None)
        elif language == "rust":
            info = _rust(path, crates, naming)
        else:
            info = _js(path, npm, naming)
        fam = family(language)
        if fam in ("python", "rust", "js"):
            key = (fam, info.module)
            if key in claimed:  # one module per file in these languages
                info.module = _fallback(path, info, claimed, fam)
            claimed[(fam, info.module)] = path
        naming.files[path] = info
        naming.modules.setdefault(fam, {}).setdefault(info.module, []).append(path)
    return naming


def _fallback(path: str, info: ModuleInfo, claimed: dict, fam: str) -> str:
    base = posixpath.splitext(path)[0]
    for tail in ("/__init__", "/mod"):
        base = base.removesuffix(tail)
    candidate = base.replace("/", info.sep if info.sep == "::" else ".")
    if (fam, candidate) not in claimed:
        return candidate
    return f"{info.module}@{path}"


def _python(path: str, inits: set[str], naming: Naming, root_name: str) -> ModuleInfo:
    directory = _dir(path)
    parts: list[str] = []
    current = directory
    while current and current in inits:
        parts.append(posixpath.basename(current))
        current = _dir(current)
    if not current and "" in inits and root_name.isidentifier():
        parts.append(root_name)  # the repository is a package directory itself
    parts.reverse()
    package = ".".join(parts) or None
    # register the package chain
    for i in range(1, len(parts) + 1):
        naming.packages.setdefault(".".join(parts[:i]), ".".join(parts[: i - 1]) or None)
    stem = _stem(path)
    if stem == "__init__":
        return ModuleInfo(package or posixpath.basename(directory) or root_name or "__init__",
                          ".", package, is_package_init=True)
    return ModuleInfo(f"{package}.{stem}" if package else stem, ".", package)


def _go_module(content: bytes) -> str | None:
    match = re.search(rb"^\s*module\s+\"?([^\s\"]+)\"?", content, re.MULTILINE)
    return match.group(1).decode("utf-8", "replace") if match else None


def _go(path: str, mods: dict[str, str], declared: str | None, naming: Naming) -> ModuleInfo:
    directory = _dir(path)
    current = directory
    while True:
        if current in mods:
            rel = directory[len(current):].lstrip("/")
            module = f"{mods[current]}/{rel}" if rel else mods[current]
            break
        if not current:
            module = directory or declared or "main"
            break
        current = _dir(current)
    naming.packages.setdefault(module, None)
    return ModuleInfo(module, ".", module)


def _crate_name(content: bytes, directory: str) -> str:
    try:
        data = tomllib.loads(content.decode("utf-8", "replace"))
    except (tomllib.TOMLDecodeError, ValueError):
        data = {}
    lib = data.get("lib") if isinstance(data.get("lib"), dict) else {}
    package = data.get("package") if isinstance(data.get("package"), dict) else {}
    name = lib.get("name") or package.get("name") or posixpath.basename(directory) or "crate"
    return str(name).replace("-", "_")


def _rust(path: str, crates: dict[str, str], naming: Naming) -> ModuleInfo:
    directory = _dir(path)
    current = directory
    while current not in crates and current:
        current = _dir(current)
    crate = crates.get(current, "crate")
    rel = path[len(current):].lstrip("/") if current else path
    rel = rel.removeprefix("src/")
    parts = posixpath.splitext(rel)[0].split("/")
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    module = "::".join([crate, *parts])
    naming.packages.setdefault(crate, None)
    return ModuleInfo(module, "::", crate)


def _npm_name(content: bytes, directory: str) -> str:
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        data = {}
    name = data.get("name") if isinstance(data, dict) else None
    return str(name) if isinstance(name, str) and name else (directory or "package")


def _js(path: str, npm: dict[str, str], naming: Naming) -> ModuleInfo:
    current = _dir(path)
    while current not in npm and current:
        current = _dir(current)
    package = npm.get(current)
    if package is not None:
        naming.packages.setdefault(package, None)
    return ModuleInfo(posixpath.splitext(path)[0], ".", package)

"""Turn the extractions of a whole repository into nodes and edges.

:class:`Index` is the repository-wide symbol table: every symbol's final qualified name
(module + local name; a clash between files is settled by path order, the later ones getting
``@<path>``), the members of every type (methods living in other files included), each
module's namespace, each file's import bindings. :func:`file_rows` then produces the rows a
file *owns*: its file node and symbol nodes, and every edge that starts at one of them;
:func:`repo_rows` the rows no file owns (repository, packages, external modules and their
CONTAINS edges). Both are pure functions of the index, which is what lets the store replace a
file's rows only when they really changed.

Unresolved calls are kept: ``to_node`` is then None and ``to_name`` carries the callee as
written (``self.items.append``) or, for a name imported from outside the repository, its
full external name (``os.path.join``), with ``properties["resolution"]`` saying which.
"""

from __future__ import annotations

import hashlib
import posixpath
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from offload.apps.codegraph import scopes
from offload.apps.codegraph.graph import (
    CALLS,
    CONTAINS,
    FILE,
    IMPORTS,
    INHERITS,
    METHOD,
    MODULE,
    PACKAGE,
    REPOSITORY,
    TYPE_KINDS,
    Extraction,
    dumps,
)
from offload.apps.codegraph.languages import family
from offload.apps.codegraph.naming import Naming

REPOSITORY_QN = "/"
MAX_LINES_KEPT = 20

#: (qn, type, name, path, start line, end line, language, content hash, properties)
NodeRow = tuple
#: (from qn, to qn | None, type, to_name, owner path | None, properties)
EdgeRow = tuple


def node_id(tenant_id: str, repo_id: str, qualified_name: str) -> uuid.UUID:
    """Stable id of a node: the same qualified name keeps its id across re-indexing."""
    return uuid.UUID(bytes=node_id_bytes(tenant_id, repo_id, qualified_name))


def node_id_bytes(tenant_id: str, repo_id: str, qualified_name: str) -> bytes:
    return hashlib.blake2b(f"{tenant_id}\0{repo_id}\0{qualified_name}".encode(),
                           digest_size=16).digest()


@dataclass(slots=True)
class FileData:
    path: str
    language: str
    content_hash: str
    size: int
    x: Extraction


class Index:
    """The repository-wide symbol table (see the module docstring)."""

    def __init__(self, files: dict[str, FileData], naming: Naming) -> None:
        self.files = files
        self.naming = naming
        self.qns: dict[str, list[str]] = {}           # path -> final qn per symbol index
        self.kind: dict[str, str] = {}                 # qn -> node type
        self.owner: dict[str, str] = {}                # qn -> path of its file
        self.members: dict[str, dict[str, str]] = defaultdict(dict)  # qn -> name -> member qn
        self.container: dict[str, str] = {}            # qn -> qn of the node containing it
        self.children: dict[str, list[str]] = defaultdict(list)  # qn -> qns it contains
        self.namespaces: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
        self.base_to_final: dict[str, str] = {}        # qn before clash renaming -> final qn
        self.foreign_impls: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        self.bindings: dict[str, dict[str, tuple]] = {}
        self.wildcards: dict[str, list[tuple]] = {}
        self.imports: dict[str, list[tuple[tuple, str, str, int]]] = {}
        self.externals: dict[str, str] = {}            # external module qn -> language
        self._bases: dict[str, list[tuple]] = {}
        self._prefixes: dict[str, set[str]] = {}
        self._following: set[tuple] = set()
        self._member_cache: dict[tuple[str, str], str | None] = {}
        self._binding = True
        self._claim_names()
        self._bind_imports()
        self._binding = False

    # --- names -------------------------------------------------------------------------
    def _claim_names(self) -> None:
        taken: set[str] = {REPOSITORY_QN, *self.naming.packages}
        for path in sorted(self.files):
            data = self.files[path]
            info = self.naming.files[path]
            fam = family(data.language)
            self.kind[path] = FILE
            self.owner[path] = path
            taken.add(path)
            finals: list[str] = []
            namespace = self.namespaces[(fam, info.module)]
            for symbol in data.x.symbols:
                base = f"{info.module}{info.sep}{symbol.local_qn}" if info.module else symbol.local_qn
                qn = base
                if qn in taken:
                    qn = f"{base}@{path}"
                    n = 2
                    while qn in taken:
                        qn = f"{base}@{path}#{n}"
                        n += 1
                taken.add(qn)
                self.base_to_final.setdefault(base, qn)
                finals.append(qn)
                self.kind[qn] = symbol.kind
                self.owner[qn] = path
                if symbol.parent >= 0:
                    parent_qn = finals[symbol.parent]
                    self.container[qn] = parent_qn
                    self.children[parent_qn].append(qn)
                    self.members[parent_qn].setdefault(symbol.name, qn)
                elif symbol.kind == METHOD and symbol.props and "receiver" in symbol.props:
                    pass  # attached to its type below, once every type is known
                else:
                    namespace.setdefault(symbol.name, qn)
            self.qns[path] = finals
        # methods declared apart from their type (Go receivers, Rust impl blocks)
        for path, data in self.files.items():
            info = self.naming.files[path]
            for symbol, qn in zip(data.x.symbols, self.qns[path], strict=True):
                if symbol.parent >= 0 or symbol.kind != METHOD or not symbol.props:
                    continue
                if "receiver" not in symbol.props:
                    continue
                local_owner = symbol.local_qn.rsplit(info.sep, 1)[0]
                owner_base = f"{info.module}{info.sep}{local_owner}" if info.module else local_owner
                owner = self.base_to_final.get(owner_base)
                if owner is not None and self.kind.get(owner) in TYPE_KINDS:
                    self.container[qn] = owner
                    self.children[owner].append(qn)
                    self.members[owner].setdefault(symbol.name, qn)
            # Rust `impl Trait for Type`: the INHERITS edge starts at the type
            for index, owner_local, base, via, _line in data.x.bases:
                if index >= 0:
                    continue
                owner_base = f"{info.module}{info.sep}{owner_local}" if info.module else owner_local
                owner = self.base_to_final.get(owner_base)
                if owner is not None:
                    self.foreign_impls[owner].append((path, base, via))

    # --- imports -----------------------------------------------------------------------
    def _bind_imports(self) -> None:
        for path, data in self.files.items():
            bindings: dict[str, tuple] = {}
            wildcards: list[tuple] = []
            targets: list[tuple[tuple, str, str, int]] = []
            resolver = scopes.import_resolver(data.language)
            for position, imp in enumerate(data.x.imports):
                for name, target, module_target in resolver(self, path, imp):
                    if name == "*":
                        if target is not None:
                            wildcards.append(target)
                    elif name and target is not None:
                        bindings.setdefault(name, target)
                    if module_target is not None:
                        member = name if imp.names and name != "*" else ""
                        targets.append((module_target, imp.target, member, position))
            self.bindings[path] = bindings
            self.wildcards[path] = wildcards
            self.imports[path] = targets
        # lazy targets (Rust paths) can be followed once every file's bindings are known
        for path, targets in self.imports.items():
            for i, (module_target, written, name, position) in enumerate(targets):
                if module_target[0] == "r":
                    targets[i] = (scopes.rust_module_target(self, module_target), written, name,
                                  position)
            for module_target, *_ in targets:
                if module_target[0] == "x":
                    self.externals.setdefault(module_target[1], self.files[path].language)
        self._bases.clear()  # lookups made while binding saw a partial index

    def module_exists(self, fam: str, module: str) -> bool:
        return module in self.naming.modules.get(fam, {})

    def has_module_prefix(self, fam: str, prefix: str) -> bool:
        prefixes = self._prefixes.get(fam)
        if prefixes is None:
            sep = "::" if fam == "rust" else "."
            prefixes = self._prefixes[fam] = set()
            for module in self.naming.modules.get(fam, {}):
                parts = module.split(sep)
                for i in range(1, len(parts)):
                    prefixes.add(sep.join(parts[:i]))
        return prefix in prefixes

    def module_files(self, fam: str, module: str) -> list[str]:
        return self.naming.modules.get(fam, {}).get(module, [])

    # --- lookups -----------------------------------------------------------------------
    def attr(self, target: tuple | None, name: str, depth: int = 0) -> tuple | None:
        """``target.name``: a member, a module's name, a submodule, or an external path."""
        if target is None or depth > 12:
            return None
        tag = target[0]
        if tag == "n":
            found = self.member(target[1], name)
            return ("n", found) if found else None
        if tag == "m":
            return self.module_attr(target[1], target[2], name, depth + 1)
        if tag in ("a", "r", "s"):
            return self.attr(self.deref(target), name, depth + 1)
        if tag == "x":
            return ("x", f"{target[1]}{target[2]}{name}", target[2])
        return None

    def deref(self, target: tuple | None) -> tuple | None:
        """Follow lazy bindings (``from m import x``, Rust ``use`` paths, static imports)."""
        depth = 0
        while target is not None and target[0] in ("a", "r", "s") and depth < 12:
            key = target
            if key in self._following:
                return None  # an import cycle
            self._following.add(key)
            try:
                if target[0] == "a":
                    target = self.module_attr(target[1], target[2], target[3], depth + 1)
                elif target[0] == "s":
                    found = self.member(target[1], target[2])
                    target = ("n", found) if found else None
                else:
                    target = scopes.rust_follow(self, target)
            finally:
                self._following.discard(key)
            depth += 1
        return target if target is None or target[0] not in ("a", "r", "s") else None

    def module_attr(self, fam: str, module: str, name: str, depth: int = 0) -> tuple | None:
        if depth > 12:
            return None
        found = self.namespaces.get((fam, module), {}).get(name)
        if found is not None:
            return ("n", found)
        sep = "::" if fam == "rust" else ("/" if fam == "go" else ".")
        if fam != "go" and self.module_exists(fam, f"{module}{sep}{name}"):
            return ("m", fam, f"{module}{sep}{name}")
        for path in self.module_files(fam, module):
            exports = self.files[path].x.exports
            if name in exports and exports[name] != name:
                local = self.module_attr(fam, module, exports[name], depth + 1)
                if local is not None:
                    return local
            bound = self.bindings.get(path, {}).get(exports.get(name, name))
            if bound is not None:
                return self.deref(bound) if depth < 12 else None
        for path in self.module_files(fam, module):
            for wildcard in self.wildcards.get(path, ()):
                found_in = self.attr(wildcard, name, depth + 1)
                if found_in is not None:
                    return found_in
        return None

    def member(self, type_qn: str, name: str) -> str | None:
        """A member of a type, searching its bases depth-first (and of a module-like symbol)."""
        found = self.members.get(type_qn)
        if found is not None and name in found:
            return found[name]
        if self.kind.get(type_qn) not in TYPE_KINDS:
            return None
        key = (type_qn, name)
        if key in self._member_cache:
            return self._member_cache[key]
        result = None
        seen = {type_qn}
        stack = list(reversed(self.bases_of(type_qn)))
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            hit = self.members.get(current, {}).get(name)
            if hit is not None:
                result = hit
                break
            if self.kind.get(current) in TYPE_KINDS:
                stack.extend(q for q in reversed(self.bases_of(current)) if q)
        if not self._binding:
            self._member_cache[key] = result
        return result

    def bases_of(self, type_qn: str) -> list[str]:
        """Resolved base classes (repository nodes only) of a type."""
        cached = self._bases.get(type_qn)
        if cached is not None:
            return [t[1] for t in cached if t and t[0] == "n"]
        self._bases[type_qn] = []  # cycle guard
        out = [target for target, *_ in self.base_targets(type_qn)]
        self._bases[type_qn] = out
        return [t[1] for t in out if t and t[0] == "n"]

    def base_targets(self, type_qn: str) -> list[tuple[tuple | None, str, str, int, str]]:
        """(target, base as written, via, position in the owner file's bases or -1, path of
        the file naming the base) for each base the type names."""
        path = self.owner.get(type_qn)
        if path is None or path == type_qn:
            return []
        data = self.files[path]
        index = self.qns[path].index(type_qn)
        out = []
        for position, (class_index, _owner, base, via, _line) in enumerate(data.x.bases):
            if class_index == index:
                scope = data.x.symbols[index].parent
                out.append((scopes.resolve_name(self, path, scope, base), base, via, position,
                            path))
        for impl_path, base, via in self.foreign_impls.get(type_qn, ()):
            out.append((scopes.resolve_name(self, impl_path, -1, base), base, via, -1, impl_path))
        return out


# --- rows --------------------------------------------------------------------------------


def file_rows(index: Index, path: str, x: Extraction) -> tuple[list[NodeRow], list[EdgeRow]]:
    """The nodes and edges ``path`` owns (see the module docstring); ``x`` is the file's full
    extraction (the index may hold only its interface)."""
    data = index.files[path]
    language = data.language
    finals = index.qns[path]
    props: dict[str, Any] = {"size": data.size, "lines": x.lines}
    if x.errors:
        props["syntax_errors"] = x.errors
    nodes: list[NodeRow] = [(path, FILE, posixpath.basename(path), path, 1, max(x.lines, 1),
                             language, data.content_hash, props)]
    #: (from qn, type, to_name) -> [to qn, properties, lines]
    edges: dict[tuple[str, str, str], list[Any]] = {}

    def edge(from_qn: str, edge_type: str, to_qn: str | None, to_name: str,
             props: dict[str, Any] | None, line: int | None = None) -> None:
        key = (from_qn, edge_type, to_name)
        entry = edges.get(key)
        if entry is None:
            entry = edges[key] = [to_qn, dict(props) if props else {}, []]
        if line is not None:
            if len(entry[2]) < MAX_LINES_KEPT:
                entry[2].append(line)
            entry[1]["count"] = entry[1].get("count", 0) + 1

    children = index.children
    container = index.container
    for symbol, qn in zip(x.symbols, finals, strict=True):
        nodes.append((qn, symbol.kind, symbol.name, path, symbol.start_line, symbol.end_line,
                      language, None, symbol.props))
        if symbol.parent < 0 and qn not in container:
            edge(path, CONTAINS, qn, qn, None)
        # members this symbol contains (methods of its type declared in other files included)
        for member_qn in children.get(qn, ()):
            edge(qn, CONTAINS, member_qn, member_qn, None)
        if symbol.kind in TYPE_KINDS:
            for target, base, via, position, base_path in index.base_targets(qn):
                if position >= 0:
                    _link(edge, qn, INHERITS, target, base, {"via": via}, x.bases[position][4])
                else:
                    _link(edge, qn, INHERITS, target, base, {"via": via, "in": base_path}, None)

    # imports: one edge per imported module, resolved to a file where the repository has it
    for module_target, written, name, position in index.imports.get(path, ()):
        line = x.imports[position].line
        to_qn, to_name, import_props = _import_target(module_target, written)
        if to_qn == path:
            continue
        edge(path, IMPORTS, to_qn, to_name, import_props, line)
        if name:
            names = edges[(path, IMPORTS, to_name)][1].setdefault("names", [])
            if name not in names and len(names) < 50:
                names.append(name)

    # calls, aggregated per (caller, callee) before resolving each pair once
    grouped: dict[tuple[int, str], list[int]] = {}
    for caller, callee, line in x.calls:
        found = grouped.get((caller, callee))
        if found is None:
            grouped[(caller, callee)] = [line]
        else:
            found.append(line)
    for (caller, callee), lines in grouped.items():
        from_qn = finals[caller] if caller >= 0 else path
        target = scopes.resolve_call(index, path, caller, callee)
        if target is not None and target[0] == "n":
            to_qn, to_name, call_props = target[1], target[1], {}
        elif target is not None:
            to_qn, to_name, call_props = None, target[1], {"resolution": "external"}
        else:
            to_qn, to_name, call_props = None, callee, {"resolution": "unresolved"}
        key = (from_qn, CALLS, to_name)
        entry = edges.get(key)
        if entry is None:
            edges[key] = [to_qn, {**call_props, "count": len(lines)}, lines[:MAX_LINES_KEPT]]
        else:
            entry[1]["count"] = entry[1].get("count", 0) + len(lines)
            entry[2] = (entry[2] + lines)[:MAX_LINES_KEPT]

    edge_rows = []
    for (from_qn, edge_type, to_name), (to_qn, edge_props, lines) in edges.items():
        if lines:
            edge_props["lines"] = lines
        edge_rows.append((from_qn, to_qn, edge_type, to_name, path, edge_props or None))
    return nodes, edge_rows


def _link(edge, from_qn, edge_type, target, written, props, line) -> None:
    if target is not None and target[0] == "n":
        edge(from_qn, edge_type, target[1], target[1], props, line)
    elif target is not None and target[0] == "x":
        edge(from_qn, edge_type, None, target[1], {**(props or {}), "resolution": "external"},
             line)
    else:
        edge(from_qn, edge_type, None, written, {**(props or {}), "resolution": "unresolved"},
             line)


def _import_target(target: tuple, written: str) -> tuple[str | None, str, dict]:
    tag = target[0]
    if tag in ("f", "p"):  # a file or a package of the repository
        return target[1], target[1], {}
    if tag == "x":
        return target[1], target[1], {"resolution": "external"}
    return None, written, {"resolution": "unresolved"}


def repo_rows(index: Index, repo_id: str, root: str) -> tuple[list[NodeRow], list[EdgeRow]]:
    """Rows no single file owns: the repository, packages, external modules, and the CONTAINS
    edges from the repository and packages down to packages and files."""
    naming = index.naming
    nodes: list[NodeRow] = [(REPOSITORY_QN, REPOSITORY, repo_id, None, None, None, None, None,
                             {"root": root})]
    edges: list[EdgeRow] = []
    for package, parent in sorted(naming.packages.items()):
        name = package.rsplit("::", 1)[-1].rsplit("/", 1)[-1].rsplit(".", 1)[-1]
        nodes.append((package, PACKAGE, name, None, None, None, None, None, None))
        edges.append((parent or REPOSITORY_QN, package, CONTAINS, package, None, None))
    for path in sorted(index.files):
        package = naming.files[path].package
        edges.append((package or REPOSITORY_QN, path, CONTAINS, path, None, None))
    taken = {REPOSITORY_QN, *naming.packages, *index.kind}
    for external, language in sorted(index.externals.items()):
        if external in taken:
            continue  # named like a repository node: imports resolve to that node instead
        name = external.rsplit("::", 1)[-1].rsplit("/", 1)[-1].rsplit(".", 1)[-1]
        nodes.append((external, MODULE, name, None, None, None, language, None,
                      {"external": True}))
    return nodes, edges


def digest_rows(nodes: list[NodeRow], edges: list[EdgeRow]) -> str:
    """A digest of a file's rows: equal digests mean nothing to rewrite."""
    return hashlib.blake2b(dumps([nodes, edges]).encode(), digest_size=16).hexdigest()


__all__ = ["FileData", "Index", "digest_rows", "file_rows", "node_id", "node_id_bytes",
           "repo_rows"]

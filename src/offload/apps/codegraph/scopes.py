"""Per-language name resolution: what an import binds, and what a name used in a scope means.

Targets are small tuples: ``("n", qn)`` a node of the repository, ``("m", family, module)`` a
module of the repository, ``("a", family, module, name)`` a name imported from a module of the
repository (looked up lazily, so re-exports work whatever the order), ``("x", name, sep)`` a
name outside the repository (``os.path.join``, ``fmt.Println``), None: unknown.

Import resolvers return ``(bound name, target, module target)`` triples, where the module
target says what the file's IMPORTS edge points at: ``("f", path)`` a file, ``("p", qn)`` a
package, ``("x", module)`` an external module, None: nothing.
"""

from __future__ import annotations

import builtins
import posixpath
from collections.abc import Callable
from typing import TYPE_CHECKING

from offload.apps.codegraph.graph import CALLABLE_KINDS, CLASS, METHOD, MODULE, TYPE_KINDS, Import
from offload.apps.codegraph.languages import family

if TYPE_CHECKING:
    from offload.apps.codegraph.resolve import Index

PY_BUILTINS = frozenset(name for name in dir(builtins) if not name.startswith("_"))
GO_BUILTINS = frozenset(
    ["any", "append", "bool", "byte", "cap", "clear", "close", "comparable", "complex", "complex64", "complex128", "copy", "delete", "error", "float32", "float64", "imag", "int", "int8", "int16", "int32", "int64", "len", "make", "max", "min", "new", "panic", "print", "println", "real", "recover", "rune", "string", "uint", "uint8", "uint16", "uint32", "uint64", "uintptr"]
)
JS_GLOBALS = frozenset(
    ["console", "Math", "JSON", "Object", "Array", "Promise", "String", "Number", "Boolean", "Symbol", "Date", "RegExp", "Error", "TypeError", "RangeError", "Map", "Set", "WeakMap", "WeakSet", "Reflect", "Proxy", "parseInt", "parseFloat", "isNaN", "isFinite", "setTimeout", "clearTimeout", "setInterval", "clearInterval", "fetch", "document", "window", "globalThis", "process", "Buffer", "encodeURIComponent", "decodeURIComponent", "BigInt", "Intl", "structuredClone", "queueMicrotask", "URL", "URLSearchParams"]
)
JAVA_LANG = frozenset(
    ["Object", "String", "System", "Math", "Integer", "Long", "Double", "Float", "Boolean", "Character", "Byte", "Short", "StringBuilder", "StringBuffer", "Thread", "Runnable", "Exception", "RuntimeException", "Error", "Throwable", "IllegalArgumentException", "IllegalStateException", "NullPointerException", "UnsupportedOperationException", "IndexOutOfBoundsException", "ArrayIndexOutOfBoundsException", "ClassCastException", "ArithmeticException", "NumberFormatException", "InterruptedException", "AssertionError", "Class", "Enum", "Iterable", "Comparable", "CharSequence", "Number", "Void", "Runtime", "Record", "ThreadLocal"]
)
JS_EXTENSIONS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")


def _file_target(index: Index, fam: str, module: str) -> tuple | None:
    files = index.module_files(fam, module)
    return ("f", files[0]) if files else None


# --- imports -------------------------------------------------------------------------------


def _python_imports(index: Index, path: str, imp: Import) -> list[tuple]:
    info = index.naming.files[path]
    if imp.level == 0 and not imp.names and not imp.wildcard and imp.target != "__future__":
        module = imp.target
        module_target = _file_target(index, "python", module) or ("x", module)
        bound = module if imp.alias else module.split(".", 1)[0]
        return [(imp.alias or bound, _python_module(index, bound), module_target)]
    base: str | None = imp.target
    if imp.level:
        package = info.module if info.is_package_init else info.module.rpartition(".")[0]
        parts = package.split(".") if package else []
        up = imp.level - 1
        if up > len(parts):
            base = None
        else:
            parts = parts[: len(parts) - up]
            base = ".".join(parts + ([imp.target] if imp.target else []))
    if base is None:
        return [(alias, None, None) for _name, alias in imp.names]
    internal = index.module_exists("python", base)
    module_target = _file_target(index, "python", base) if internal else (
        ("x", base) if base else None)
    out: list[tuple] = []
    if imp.wildcard:
        out.append(("*", ("m", "python", base) if internal else None, module_target))
    for name, alias in imp.names:
        sub = f"{base}.{name}" if base else name
        if index.module_exists("python", sub):
            out.append((alias, ("m", "python", sub), _file_target(index, "python", sub)))
        elif internal:
            out.append((alias, ("a", "python", base, name), module_target))
        else:
            out.append((alias, ("x", sub, "."), module_target))
    return out


def _python_module(index: Index, module: str) -> tuple:
    if index.module_exists("python", module) or index.has_module_prefix("python", module):
        return ("m", "python", module)
    return ("x", module, ".")


def _go_imports(index: Index, path: str, imp: Import) -> list[tuple]:
    target = imp.target
    if index.module_exists("go", target):
        files = index.module_files("go", target)
        name = imp.alias or index.files[files[0]].x.package or target.rsplit("/", 1)[-1]
        binding: tuple = ("m", "go", target)
        module_target: tuple = ("p", target)
    else:
        name = imp.alias or _go_default_name(target)
        binding = ("x", target, ".")
        module_target = ("x", target)
    return [("*" if imp.wildcard else name, binding, module_target)]


def _go_default_name(import_path: str) -> str:
    parts = import_path.split("/")
    last = parts[-1]
    if len(parts) > 1 and last.startswith("v") and last[1:].isdigit():
        last = parts[-2]
    return last.split(".")[0].removeprefix("go-")


def _java_imports(index: Index, path: str, imp: Import) -> list[tuple]:
    target = imp.target
    if imp.wildcard:
        if index.module_exists("java", target):
            return [("*", ("m", "java", target), ("p", target))]
        owner = index.base_to_final.get(target)
        if owner is not None:
            return [("", None, ("f", index.owner[owner]))]
        return [("", None, ("x", target))]
    owner = index.base_to_final.get(target)
    package = target.rpartition(".")[0] or target
    if owner is not None and index.kind.get(owner) in TYPE_KINDS:
        module_target: tuple = ("f", index.owner[owner])
        if imp.names:  # static import of members, looked up once the index is complete
            return [(alias, ("s", owner, name), module_target) for name, alias in imp.names]
        return [(target.rsplit(".", 1)[-1], ("n", owner), module_target)]
    if imp.names:
        return [(alias, ("x", f"{target}.{name}", "."), ("x", package)) for name, alias in imp.names]
    return [(target.rsplit(".", 1)[-1], ("x", target, "."), ("x", package))]


def _js_imports(index: Index, path: str, imp: Import) -> list[tuple]:
    spec = imp.target
    resolved = _js_resolve(index, path, spec) if spec.startswith((".", "/")) else None
    if resolved is not None:
        module = index.naming.files[resolved].module
        base: tuple = ("m", "js", module)
        module_target: tuple = ("f", resolved)
    else:
        name = posixpath.normpath(posixpath.join(posixpath.dirname(path), spec)) if \
            spec.startswith(".") else spec
        base = ("x", name, ".")
        module_target = ("x", name)
    out: list[tuple] = []
    if imp.wildcard:
        out.append(("*", base if base[0] == "m" else None, module_target))
    if imp.alias:
        out.append((imp.alias, base, module_target))
    for name, local in imp.names:
        if base[0] == "m":
            out.append((local, ("a", "js", base[2], name), module_target))
        else:
            out.append((local, ("x", f"{base[1]}.{name}", "."), module_target))
    if not out:
        out.append(("", None, module_target))
    return out


def _js_resolve(index: Index, path: str, spec: str) -> str | None:
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), spec)).lstrip("/")
    files = index.files
    if joined in files:
        return joined
    stem = joined
    for js_ext, ts_exts in ((".js", (".ts", ".tsx")), (".mjs", (".mts",)), (".cjs", (".cts",))):
        if joined.endswith(js_ext):
            for ext in ts_exts:
                if joined[: -len(js_ext)] + ext in files:
                    return joined[: -len(js_ext)] + ext
    for ext in JS_EXTENSIONS:
        if stem + ext in files:
            return stem + ext
    for ext in JS_EXTENSIONS:
        if f"{stem}/index{ext}" in files:
            return f"{stem}/index{ext}"
    return None


def _rust_imports(index: Index, path: str, imp: Import) -> list[tuple]:
    parts = tuple(imp.target.split("::"))
    lazy = ("r", path, parts)  # followed once every file's bindings are known
    if imp.wildcard:
        return [("*", lazy, lazy)]
    return [(imp.alias or parts[-1], lazy, lazy)]


def rust_follow(index: Index, target: tuple) -> tuple | None:
    """What a Rust ``use`` path names: a repository node or module, or an external path."""
    _tag, path, parts = target
    found = _rust_path(index, path, -1, list(parts))
    if found is None and parts and parts[0] not in ("crate", "self", "super", "Self"):
        return ("x", "::".join(parts), "::")
    return found


def rust_module_target(index: Index, target: tuple) -> tuple:
    """The IMPORTS target of a Rust ``use``: the file of the module or item, else the external
    module (the path without its last part when that names a type)."""
    found = index.deref(target)
    if found is not None and found[0] == "m":
        return _file_target(index, "rust", found[2]) or ("p", found[2])
    if found is not None and found[0] == "n":
        return ("f", index.owner[found[1]])
    segments = list(target[2])
    if len(segments) > 1 and segments[-1][:1].isupper():
        segments = segments[:-1]
    return ("x", "::".join(segments))


def import_resolver(language: str) -> Callable[[Index, str, Import], list[tuple]]:
    return {
        "python": _python_imports,
        "go": _go_imports,
        "java": _java_imports,
        "rust": _rust_imports,
    }.get(language, _js_imports)


# --- names in scopes -----------------------------------------------------------------------


def _walk(index: Index, target: tuple | None, parts: list[str]) -> tuple | None:
    target = index.deref(target)
    for part in parts:
        if target is None:
            return None
        target = index.deref(index.attr(target, part))
    return target


def _chain(index: Index, path: str, scope: int):
    """(symbol, qualified name) from ``scope`` outwards."""
    symbols = index.files[path].x.symbols
    finals = index.qns[path]
    while scope >= 0:
        yield symbols[scope], finals[scope]
        scope = symbols[scope].parent


def _method_owner(index: Index, path: str, scope: int, kinds=TYPE_KINDS) -> str | None:
    """The type a method (or a function nested in one) belongs to."""
    for symbol, qn in _chain(index, path, scope):
        if symbol.kind == METHOD:
            owner = index.container.get(qn)
            if owner is not None and index.kind.get(owner) in kinds:
                return owner
        elif symbol.kind in kinds and symbol.kind != MODULE:
            return qn
    return None


def _namespace(index: Index, path: str, name: str) -> tuple | None:
    info = index.naming.files[path]
    fam = family(index.files[path].language)
    found = index.namespaces.get((fam, info.module), {}).get(name)
    if found is not None:
        return ("n", found)
    bound = index.bindings.get(path, {}).get(name)
    if bound is not None:
        return bound
    for wildcard in index.wildcards.get(path, ()):
        found_in = index.attr(wildcard, name)
        if found_in is not None:
            return found_in
    return None


def _super_member(index: Index, owner: str | None, name: str | None) -> tuple | None:
    if owner is None:
        return None
    bases = index.bases_of(owner)
    if name is None:
        return ("n", bases[0]) if bases else None
    for base in bases:
        found = index.member(base, name)
        if found is not None:
            return ("n", found)
    return None


#: Names every file of a language sees without importing them: (names, external prefix).
_GLOBALS = {
    "python": (PY_BUILTINS, "builtins."),
    "go": (GO_BUILTINS, "builtin."),
    "java": (JAVA_LANG, "java.lang."),
    "js": (JS_GLOBALS, ""),
}
#: Definitions whose body is a scope for names (a Python class body only for its own code).
_SCOPES = {"python": CALLABLE_KINDS, "js": CALLABLE_KINDS | {MODULE},
           "rust": CALLABLE_KINDS | {MODULE}}


def _lexical(index: Index, path: str, scope: int, head: str) -> tuple | None:
    """``head`` as a definition of an enclosing scope, else as a name of the file's module
    (its definitions, imports, wildcard imports), else as a global of its language."""
    fam = family(index.files[path].language)
    kinds = _SCOPES.get(fam, ())
    for depth, (symbol, qn) in enumerate(_chain(index, path, scope)):
        if symbol.kind in kinds or (fam == "python" and depth == 0 and symbol.kind == CLASS):
            found = index.members.get(qn, {}).get(head)
            if found is not None:
                return ("n", found)
    target = _namespace(index, path, head)
    if target is None and fam in _GLOBALS and head in _GLOBALS[fam][0]:
        target = ("x", _GLOBALS[fam][1] + head, ".")
    return target


def _python_call(index: Index, path: str, scope: int, parts: list[str]) -> tuple | None:
    head = parts[0]
    if head == "super()":
        return _walk(index, _super_member(index, _method_owner(index, path, scope, {CLASS}),
                                          parts[1]), parts[2:])
    if head in ("self", "cls") and len(parts) > 1:
        owner = _method_owner(index, path, scope, {CLASS})
        if owner is not None:
            return _walk(index, ("n", owner), parts[1:])
    return _walk(index, _lexical(index, path, scope, head), parts[1:])


def _js_call(index: Index, path: str, scope: int, parts: list[str]) -> tuple | None:
    head = parts[0]
    if head in ("this", "super"):
        owner = _method_owner(index, path, scope, {CLASS})
        if head == "this":
            return _walk(index, ("n", owner), parts[1:]) if owner and len(parts) > 1 else None
        return _walk(index, _super_member(index, owner, parts[1] if len(parts) > 1 else None),
                     parts[2:])
    return _walk(index, _lexical(index, path, scope, head), parts[1:])


def _go_call(index: Index, path: str, scope: int, parts: list[str]) -> tuple | None:
    if scope >= 0 and len(parts) > 1:
        symbol = index.files[path].x.symbols[scope]
        if symbol.props and symbol.props.get("receiver_var") == parts[0]:
            owner = index.container.get(index.qns[path][scope])
            if owner:
                return _walk(index, ("n", owner), parts[1:])
    return _walk(index, _lexical(index, path, scope, parts[0]), parts[1:])


def _java_call(index: Index, path: str, scope: int, parts: list[str]) -> tuple | None:
    head = parts[0]
    types = [qn for symbol, qn in _chain(index, path, scope) if symbol.kind in TYPE_KINDS]
    if head == "this":
        if len(parts) == 1:  # this(...) in a constructor
            return None
        return _walk(index, ("n", types[0]), parts[1:]) if types else None
    if head == "super":
        owner = types[0] if types else None
        return _walk(index, _super_member(index, owner, parts[1] if len(parts) > 1 else None),
                     parts[2:])
    if len(parts) == 1:  # a bare method call: a member of an enclosing type (or its bases)
        for owner in types:
            found = index.member(owner, head)
            if found is not None and index.kind.get(found) not in TYPE_KINDS:
                return ("n", found)
        bound = index.deref(index.bindings.get(path, {}).get(head))  # static import
        if bound is not None and bound[0] == "n" and index.kind.get(bound[1]) == METHOD:
            return bound
    target = None
    for owner in types:  # a type name: nested, enclosing, same package, imported, java.lang
        if owner.rsplit(".", 1)[-1] == head:
            target = ("n", owner)
            break
        found = index.member(owner, head)
        if found is not None and index.kind.get(found) in TYPE_KINDS:
            target = ("n", found)
            break
    return _walk(index, target or _lexical(index, path, scope, head), parts[1:])


def _rust_current_module(index: Index, path: str, scope: int) -> tuple:
    for symbol, qn in _chain(index, path, scope):
        if symbol.kind == MODULE:
            return ("n", qn)
    return ("m", "rust", index.naming.files[path].module)


def _rust_parent(index: Index, module: tuple) -> tuple | None:
    name = module[1] if module[0] == "n" else module[2]
    if "::" not in name:
        return None
    parent = name.rsplit("::", 1)[0]
    if index.module_exists("rust", parent):
        return ("m", "rust", parent)
    return ("n", parent) if parent in index.kind else None


def _rust_path(index: Index, path: str, scope: int, parts: list[str]) -> tuple | None:
    head = parts[0]
    if head == "crate":
        target: tuple | None = ("m", "rust", index.naming.files[path].package or "crate")
    elif head == "self":
        target = _rust_current_module(index, path, scope)
    elif head == "super":
        target = _rust_parent(index, _rust_current_module(index, path, scope))
    elif head == "Self":
        owner = _method_owner(index, path, scope)
        target = ("n", owner) if owner else None
    else:
        target = _lexical(index, path, scope, head)
        if target is None:
            current = _rust_current_module(index, path, scope)
            if current[0] == "m" and index.module_exists("rust", f"{current[2]}::{head}"):
                target = ("m", "rust", f"{current[2]}::{head}")
        if target is None and head in index.naming.packages:
            target = ("m", "rust", head)
    rest = parts[1:]
    while target is not None and rest and rest[0] == "super":
        target = _rust_parent(index, target)
        rest = rest[1:]
    return _walk(index, target, rest)


def _rust_call(index: Index, path: str, scope: int, parts: list[str]) -> tuple | None:
    if parts[0] == "self" and len(parts) > 1:
        owner = _method_owner(index, path, scope)
        return _walk(index, ("n", owner), parts[1:]) if owner else None
    return _rust_path(index, path, scope, parts)


_CALLS = {"python": _python_call, "go": _go_call, "java": _java_call, "rust": _rust_call}


def resolve_call(index: Index, path: str, scope: int, text: str) -> tuple | None:
    """What ``text`` (a callee or a base class, as written) names inside symbol ``scope``: a
    node of the repository or an external name; None when it stays unresolved (and always
    for a callee written ``?...``: no name, or a method of an unknown object)."""
    if text.startswith("?"):
        return None
    language = index.files[path].language
    if language == "rust" and "::" in text:
        target = _rust_path(index, path, scope, text.split("::"))
    else:
        target = _CALLS.get(language, _js_call)(index, path, scope, text.split("."))
    return target if target is None or target[0] in ("n", "x") else None


def resolve_name(index: Index, path: str, scope: int, text: str) -> tuple | None:
    return resolve_call(index, path, scope, text)

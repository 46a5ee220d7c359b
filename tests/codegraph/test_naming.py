"""Module and package names from paths and manifests (naming.py)."""

from __future__ import annotations

from offload.apps.codegraph.naming import name_files


def modules(files: dict[str, str], declared=None, manifests=None, root_name="repo"):
    naming = name_files(files, declared or {}, manifests or {}, root_name)
    return {path: (info.module, info.package) for path, info in naming.files.items()}, naming


def test_python_packages_follow_init_files_and_clashes_are_told_apart():
    got, naming = modules({
        "src/app/__init__.py": "python", "src/app/core.py": "python",
        "src/app/sub/__init__.py": "python", "src/app/sub/x.py": "python",
        "tests/conftest.py": "python", "docs/conftest.py": "python",
        "tools/a.py": "python", "tools/a/__init__.py": "python",
    })
    assert got["src/app/core.py"] == ("app.core", "app")
    assert got["src/app/sub/x.py"] == ("app.sub.x", "app.sub")
    assert got["src/app/__init__.py"] == ("app", "app")
    assert naming.packages == {"app": None, "app.sub": "app", "a": None}
    # two conftest.py outside packages: the first by path keeps the name
    assert got["docs/conftest.py"] == ("conftest", None)
    assert got["tests/conftest.py"] == ("tests.conftest", None)
    # a module beside a package of the same name
    assert {got["tools/a.py"][0], got["tools/a/__init__.py"][0]} == {"a", "tools.a"}


def test_a_repository_that_is_a_package_directory_is_named_after_it():
    got, naming = modules({"__init__.py": "python", "core.py": "python",
                           "sub/__init__.py": "python", "sub/m.py": "python"},
                          root_name="offload")
    assert got["core.py"] == ("offload.core", "offload")
    assert got["sub/m.py"] == ("offload.sub.m", "offload.sub")
    assert got["__init__.py"] == ("offload", "offload")
    assert naming.packages == {"offload": None, "offload.sub": "offload"}


def test_go_import_paths_come_from_go_mod():
    got, _ = modules({"main.go": "go", "pkg/util/u.go": "go", "tools/gen/g.go": "go",
                      "tools/gen/go.mod": "x"},
                     declared={"main.go": "main"},
                     manifests={"go.mod": b"module example.com/m\n",
                                "tools/gen/go.mod": b'module "example.com/gen"\n'})
    assert got["main.go"] == ("example.com/m", "example.com/m")
    assert got["pkg/util/u.go"] == ("example.com/m/pkg/util", "example.com/m/pkg/util")
    assert got["tools/gen/g.go"] == ("example.com/gen", "example.com/gen")


def test_go_without_go_mod_uses_directories():
    got, _ = modules({"a/b/x.go": "go", "y.go": "go"}, declared={"y.go": "tool"})
    assert got["a/b/x.go"][0] == "a/b" and got["y.go"][0] == "tool"


def test_java_uses_the_declared_package():
    got, naming = modules({"src/A.java": "java", "B.java": "java"},
                          declared={"src/A.java": "com.acme", "B.java": None})
    assert got["src/A.java"] == ("com.acme", "com.acme") and got["B.java"] == ("", None)
    assert naming.packages == {"com.acme": None}


def test_rust_modules_follow_cargo_and_paths():
    got, naming = modules(
        {"Cargo.toml": "x", "src/lib.rs": "rust", "src/net/mod.rs": "rust",
         "src/net/tcp.rs": "rust", "src/main.rs": "rust", "tests/it.rs": "rust",
         "other/src/lib.rs": "rust"},
        manifests={"Cargo.toml": b'[package]\nname = "my-crate"\n',
                   "other/Cargo.toml": b'[package]\nname = "x"\n[lib]\nname = "other_lib"\n'})
    assert got["src/lib.rs"] == ("my_crate", "my_crate")
    assert got["src/net/mod.rs"][0] == "my_crate::net"
    assert got["src/net/tcp.rs"][0] == "my_crate::net::tcp"
    assert got["tests/it.rs"][0] == "my_crate::tests::it"
    assert got["other/src/lib.rs"][0] == "other_lib"
    # lib.rs and main.rs are both the crate root: told apart by path
    assert got["src/main.rs"][0] == "src::main"
    assert set(naming.packages) == {"my_crate", "other_lib"}


def test_javascript_modules_are_paths_and_packages_come_from_package_json():
    got, naming = modules({"web/src/app.ts": "typescript", "web/package.json": "x",
                           "lib/util.js": "javascript"},
                          manifests={"web/package.json": b'{"name": "@acme/web"}'})
    assert got["web/src/app.ts"] == ("web/src/app", "@acme/web")
    assert got["lib/util.js"] == ("lib/util", None)
    assert naming.packages == {"@acme/web": None}

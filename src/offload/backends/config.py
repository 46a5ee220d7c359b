"""Where the SurrealDB result store is and how to reach it: parsed once, validated at start.

URL forms (the ``surrealdb+`` prefix is what selects this backend in Celery)::

    surrealdb+mem://                          embedded, in this process's memory
    surrealdb+surrealkv:///abs/path/results   embedded, on disk (one process only)
    surrealdb+ws://host:8000/rpc              a SurrealDB server over WebSocket
    surrealdb+wss://host/rpc                  ... over TLS

Namespace, database and credentials come from the URL (``ws://user:pass@host/rpc?ns=x&db=y``)
or from the keys users of ``surrealdb-celery-backend`` already have: ``surrealdb_url``,
``surrealdb_namespace``, ``surrealdb_database``, ``surrealdb_username``, ``surrealdb_password``.
Tuning keys: ``surrealdb_timeout`` (seconds per call), ``surrealdb_max_retries`` and
``surrealdb_retry_backoff`` (reconnecting), ``surrealdb_pool_size`` (server connections).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from offload.errors import ConfigurationError

__all__ = ["EMBEDDED_SCHEMES", "SERVER_SCHEMES", "SurrealConfig", "is_embedded_url"]

#: Schemes served by the embedded engine in this process (surrealdb-embedded).
EMBEDDED_SCHEMES = frozenset({"mem", "memory", "surrealkv", "file"})
#: Schemes of a SurrealDB server reached over the network.
SERVER_SCHEMES = frozenset({"ws", "wss"})
_UNSUPPORTED = {
    "http": "the HTTP protocol has no session; use ws:// (or wss://) for the same server",
    "https": "the HTTP protocol has no session; use wss:// for the same server",
    "rocksdb": "the embedded engine (surrealdb-embedded) has no RocksDB storage; use "
               "surrealdb+surrealkv:///path for an on-disk store",
}
DEFAULT_URL = "ws://localhost:8000/rpc"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _strip_prefix(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if scheme.lower() == "surrealdb":  # surrealdb://host -> a server over WebSocket
        return f"ws://{rest}"
    if scheme.lower().startswith("surrealdb+"):
        return f"{scheme[len('surrealdb+'):]}://{rest}"
    return url


def _redact(url: str) -> str:
    """``url`` as shown in an error: a password in it is replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def is_embedded_url(url: str | None) -> bool:
    """True for URLs (with or without ``surrealdb+``) served by the in-process engine."""
    if not url or "://" not in url:
        return False
    return _strip_prefix(url).split("://", 1)[0].lower() in EMBEDDED_SCHEMES


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SurrealConfig:
    """Everything needed to open the store; build it with :meth:`from_celery`."""

    scheme: str
    #: URL handed to the engine or socket: ``mem://``, ``surrealkv:///abs``, ``ws://h:p/rpc``.
    target: str
    namespace: str = "celery"
    database: str = "results"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    max_retries: int = 5
    retry_backoff: float = 0.1
    pool_size: int = 4

    # --- derived --------------------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        return self.scheme in EMBEDDED_SCHEMES

    @property
    def path(self) -> Path | None:
        """The on-disk directory of an embedded store (``None`` for memory and servers)."""
        if self.scheme in {"mem", "memory"} or not self.embedded:
            return None
        return Path(self.target.split("://", 1)[1])

    @property
    def host(self) -> str | None:
        return None if self.embedded else urlsplit(self.target).hostname

    @property
    def engine_key(self) -> str:
        """Identity of the engine or server: stores naming the same key share it."""
        if self.path is not None:
            return f"{self.scheme}://{self.path.resolve()}"
        return self.target

    @property
    def store_key(self) -> tuple[str, str, str, str | None]:
        return (self.engine_key, self.namespace, self.database, self.username)

    def redacted(self) -> str:
        """The URL as shown in logs and errors: never a password."""
        who = f"{self.username}@" if self.username and not self.embedded else ""
        if self.embedded:
            location = self.target
        else:
            parts = urlsplit(self.target)
            location = f"{parts.scheme}://{who}{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"
        return f"surrealdb+{location} (ns={self.namespace}, db={self.database})"

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_celery(cls, url: str | None, conf: Any) -> SurrealConfig:
        """Build from the backend URL Celery passes (may be ``None``) and ``app.conf``.

        URL parts win over the ``surrealdb_*`` keys, which win over the defaults.
        """
        raw = url or conf.get("surrealdb_url") or DEFAULT_URL
        return cls.parse(
            raw,
            namespace=conf.get("surrealdb_namespace"),
            database=conf.get("surrealdb_database"),
            username=conf.get("surrealdb_username"),
            password=conf.get("surrealdb_password"),
            timeout=conf.get("surrealdb_timeout"),
            max_retries=conf.get("surrealdb_max_retries"),
            retry_backoff=conf.get("surrealdb_retry_backoff"),
            pool_size=conf.get("surrealdb_pool_size"),
        )

    @classmethod
    def parse(cls, url: str, **defaults: Any) -> SurrealConfig:
        text = _strip_prefix(url.strip())
        if "://" not in text:
            raise ConfigurationError(
                f"SurrealDB result backend URL {_redact(url)!r} has no scheme; use for example "
                "surrealdb+ws://127.0.0.1:8000/rpc or surrealdb+surrealkv:///var/lib/results"
            )
        scheme = text.split("://", 1)[0].lower()
        if scheme in _UNSUPPORTED:
            raise ConfigurationError(f"SurrealDB URL {_redact(url)!r}: {_UNSUPPORTED[scheme]}")
        if scheme not in EMBEDDED_SCHEMES | SERVER_SCHEMES:
            known = ", ".join(f"surrealdb+{s}" for s in sorted(EMBEDDED_SCHEMES | SERVER_SCHEMES))
            raise ConfigurationError(
                f"unknown SurrealDB URL scheme in {_redact(url)!r}; use one of {known}"
            )
        options = {k: v for k, v in defaults.items() if v is not None}
        if scheme in EMBEDDED_SCHEMES:
            return cls._embedded(scheme, text, options)
        return cls._server(scheme, text, url, options)

    @classmethod
    def _embedded(cls, scheme: str, text: str, options: dict[str, Any]) -> SurrealConfig:
        rest = text.split("://", 1)[1]
        rest, _, query = rest.partition("?")
        cls._apply_query(query, options)
        options.pop("username", None)  # the embedded engine has no users
        options.pop("password", None)
        if scheme in {"mem", "memory"}:
            return cls._build(scheme="mem", target="mem://", **options)
        if not rest:
            raise ConfigurationError(
                f"surrealdb+{scheme}:// needs a directory, e.g. surrealdb+{scheme}:///var/lib/results"
            )
        path = Path(unquote(rest)).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        return cls._build(scheme=scheme, target=f"{scheme}://{path}", **options)

    @classmethod
    def _server(cls, scheme: str, text: str, original: str, options: dict[str, Any]) -> SurrealConfig:
        parts = urlsplit(text)
        if not parts.hostname:
            raise ConfigurationError(f"SurrealDB URL {_redact(original)!r} names no host")
        cls._apply_query(parts.query, options)
        if parts.username:
            options["username"] = unquote(parts.username)
        if parts.password is not None:
            options["password"] = unquote(parts.password)
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        path = parts.path.rstrip("/") or "/rpc"
        if not path.endswith("/rpc"):
            path = f"{path}/rpc"
        config = cls._build(scheme=scheme, target=f"{scheme}://{netloc}{path}", **options)
        config._check_credentials()
        return config

    @staticmethod
    def _apply_query(query: str, options: dict[str, Any]) -> None:
        aliases = {"ns": "namespace", "namespace": "namespace", "db": "database",
                   "database": "database", "timeout": "timeout", "pool_size": "pool_size",
                   "max_retries": "max_retries"}
        for key, values in parse_qs(query).items():
            if key not in aliases:
                raise ConfigurationError(
                    f"unknown SurrealDB URL option {key!r}; known: {', '.join(sorted(aliases))}"
                )
            options[aliases[key]] = values[-1]

    @classmethod
    def _build(cls, **values: Any) -> SurrealConfig:
        try:
            for name, kind in (("timeout", float), ("retry_backoff", float),
                               ("max_retries", int), ("pool_size", int)):
                if name in values:
                    values[name] = kind(values[name])
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"invalid SurrealDB option: {exc}") from None
        for name in ("namespace", "database"):
            if name in values and not str(values[name]).strip():
                raise ConfigurationError(f"surrealdb_{name} must not be empty")
        config = cls(**values)
        if config.timeout <= 0 or config.max_retries < 0 or config.pool_size < 1:
            raise ConfigurationError(
                "surrealdb_timeout must be > 0, surrealdb_max_retries >= 0, surrealdb_pool_size >= 1"
            )
        return config

    def _check_credentials(self) -> None:
        if self.username == "root" and self.password == "root" and not _is_loopback(self.host):
            raise ConfigurationError(
                f"refusing the default root/root credentials for {self.redacted()}: that server "
                "is reachable from other machines. Create a user for Celery "
                "(DEFINE USER celery ON DATABASE PASSWORD '...' ROLES EDITOR) and set "
                "surrealdb_username / surrealdb_password (or the URL's user:password@)"
            )
        if (self.username is None) != (self.password is None):
            raise ConfigurationError(
                "surrealdb_username and surrealdb_password must be given together"
            )

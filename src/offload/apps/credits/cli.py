"""``offload credits ...``: the operator's commands (the CLI loads ``register`` for every
package in ``settings.task_packages``).

    offload credits set-rate /search 4          price an operation (global)
    offload credits open-account acme 42 --tier premium
    offload credits add acme 42 100 --key invoice-17
    offload credits balance acme 42
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Annotated, Any, TypeVar

import typer

from offload.apps.credits import service as ledger
from offload.apps.credits.errors import CreditsError
from offload.apps.credits.schema import upgrade
from offload.db import create_engine, session_maker

T = TypeVar("T")
credits_app = typer.Typer(help="Credit ledger: rates, accounts, balances.", no_args_is_help=True)


def _run(action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(session)`` on the configured database (schema migrated first)."""
    from offload.settings import load_settings

    async def main() -> T:
        engine = create_engine(load_settings().database)
        try:
            await upgrade(engine)
            async with session_maker(engine)() as session:
                return await action(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except CreditsError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


def _print(result: Any) -> None:
    typer.echo(json.dumps(asdict(result) if result is not None else None, default=str))


@credits_app.command("set-rate")
def set_rate(
    endpoint_path: str,
    credits_per_request: int,
    inactive: Annotated[bool, typer.Option("--inactive", help="Disable the operation.")] = False,
) -> None:
    """Set what one request of an operation costs."""
    _run(lambda s: ledger.set_rate(s, endpoint_path, credits_per_request, not inactive))
    typer.echo(f"{endpoint_path}: {credits_per_request} credits per request")


@credits_app.command("open-account")
def open_account(
    tenant: str, user_id: str, tier: Annotated[str, typer.Option(help="free|standard|premium")]
    = "free",
) -> None:
    """Open an account (or change its tier)."""
    _print(_run(lambda s: ledger.open_account(s, tenant, user_id, tier)))


@credits_app.command("add")
def add(
    tenant: str, user_id: str, amount: int,
    key: Annotated[str, typer.Option(help="Idempotency key (running twice adds once).")],
    refund: Annotated[bool, typer.Option("--refund", help="Record it as a refund.")] = False,
) -> None:
    """Add credits to an account."""
    kind = "refund" if refund else "addition"
    _print(_run(lambda s: ledger.add(s, tenant, user_id, amount, key, kind=kind)))


@credits_app.command("balance")
def balance(tenant: str, user_id: str) -> None:
    """Show an account's balance."""
    _print(_run(lambda s: ledger.balance(s, tenant, user_id)))


def register(app: typer.Typer) -> None:
    app.add_typer(credits_app, name="credits")


__all__ = ["register"]

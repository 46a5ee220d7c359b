import typer

from offload.integrations.fastapi import tenant_task_id


def register(app: typer.Typer) -> None:
    @app.command("fdn-hello")
    def hello(name: str = "world") -> None:
        """Say hello (a task package's command)."""
        typer.echo(f"hello {name}")


async def on_dev_start(dev) -> None:
    from fdn_demo.tasks import add

    result = add.apply_async(args=(20, 22), task_id=tenant_task_id(dev.tenant))
    (dev.settings.data_dir / "dev-start.txt").write_text(f"{result.id} {dev.api_url}\n")

"""``alive-admin``: operator commands for a deployment (the data dir and database of
``ALIVE_*``, like the server's)."""

from __future__ import annotations

import json

import typer

from alive_service.config import Settings
from alive_service.store.gc import collect_garbage
from alive_service.store.sql import SqlStore

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Operator commands for an Alive deployment.")


@app.callback()
def main() -> None:
    """Operator commands for an Alive deployment."""


@app.command()
def gc(
    dry_run: bool = typer.Option(False, help="Only count what would go."),
    min_age_hours: float = typer.Option(
        1.0, help="Keep orphans younger than this: a request may be about to commit them."),
) -> None:
    """Remove blobs no video row points to, and unfinished ``.tmp-*`` writes."""
    settings = Settings.from_env()
    store = SqlStore(settings.database_url, settings.blob_dir, create_blobs=False)
    if not store.blobs.root.is_dir():
        typer.echo(f"alive-admin: no blob directory at {store.blobs.root}", err=True)
        raise typer.Exit(2)
    try:
        report = collect_garbage(store, min_age_hours * 3600, dry_run)
    finally:
        store.close()
    typer.echo(json.dumps(report.__dict__))


if __name__ == "__main__":
    app()

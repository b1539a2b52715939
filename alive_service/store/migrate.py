"""Bring a database to the newest schema with Alembic (``alive-server`` and ``alive-mod`` do
this at start).

A database already at the newest revision is recognised with one query, without importing
Alembic (a second of start-up on a busy machine, paid by every ``alive-mod`` command).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION_RE = re.compile(r"^(revision|down_revision)\s*=\s*(.+?)\s*$", re.MULTILINE)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """The newest revision in migrations/versions (None unless there is exactly one head)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for key, literal in _REVISION_RE.findall(path.read_text()):
            value = ast.literal_eval(literal)
            if key == "revision":
                revisions.add(value)
            elif value:
                parents.update(value if isinstance(value, tuple | list) else (value,))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def current_revision(url: str) -> str | None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from alive_service.store.sql import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            found = list(versions)
            return found[0] if len(found) == 1 else None
    except DBAPIError:  # no alembic_version table yet: a new database
        return None
    finally:
        engine.dispose()


def upgrade(url: str) -> None:
    head = head_revision()
    if head is not None and current_revision(url) == head:
        return
    from alembic import command

    command.upgrade(alembic_config(url), "head")

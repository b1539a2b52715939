"""Alembic environment: runs migrations on the URL the service is configured with."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from alive_service.store.schema import Base
from alive_service.store.sql import make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url must be set"

engine = make_engine(url)
with engine.connect() as connection:
    if connection.dialect.name == "postgresql":
        # Replicas starting together: one migrates, the others wait for it.
        connection.execute(text("SELECT pg_advisory_lock(72346001)"))
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_unlock(72346001)"))
        connection.commit()
engine.dispose()

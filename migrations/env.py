"""Alembic environment: one URL, online migrations only (we always have a live server)."""

from alembic import context
from sqlalchemy import create_engine, pool

from daemon.db.embedded import to_sqlalchemy_url

config = context.config


def run_migrations_online() -> None:
    engine = create_engine(to_sqlalchemy_url(config.get_main_option("sqlalchemy.url")), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()

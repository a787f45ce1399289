"""Database wiring: the Tortoise configuration, opening and closing it, and applying migrations."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from tortoise import Tortoise, connections

APP = "models"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def tortoise_config(database_url: str, *, with_aerich: bool = True) -> dict[str, Any]:
    models = ["models.job", "models.upload", "aerich.models"] if with_aerich else ["models.job", "models.upload"]
    return {
        "connections": {"default": database_url},
        "apps": {APP: {"models": models, "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


async def open_database(database_url: str) -> None:
    """Open the ORM for the whole process: request handlers and worker jobs run in other tasks
    than the one that opened it, so the context must be the global fallback, not task-local.

    An SQLite database (the embedded default of `restoration dev`) gets its schema from the
    models; PostgreSQL's comes only from the migrations (`restoration migrate`).
    """
    if database_url.startswith("sqlite://"):
        Path(database_url.removeprefix("sqlite://")).parent.mkdir(parents=True, exist_ok=True)
    await Tortoise.init(config=tortoise_config(database_url, with_aerich=False), _enable_global_fallback=True)
    if database_url.startswith("sqlite://"):
        await Tortoise.generate_schemas(safe=True)
        await _add_missing_columns(database_url)


class OutdatedDatabase(Exception):
    """An SQLite file from an older version lacks a column that cannot be added in place."""


async def _add_missing_columns(database_url: str) -> list[str]:
    """Bring an SQLite file made by an older version up to the models: `generate_schemas` creates
    missing tables but never alters existing ones. Columns the models no longer have are left in
    place (nothing reads them). Returns the columns added, as `table.column`."""
    connection = connections.get("default")
    added: list[str] = []
    for model in Tortoise.apps[APP].values():
        meta = model._meta
        _, rows = await connection.execute_query(f'PRAGMA table_info("{meta.db_table}")')
        present = {row["name"] for row in rows}
        for name, field in meta.fields_map.items():
            column = meta.fields_db_projection.get(name)
            if column is None or column in present:
                continue
            definition = f'"{column}" {field.get_for_dialect("sqlite", "SQL_TYPE")}'
            if not field.null:
                default = field.default
                if isinstance(default, Enum):
                    default = default.value
                if isinstance(default, bool | int | float):
                    definition += f" NOT NULL DEFAULT {int(default) if isinstance(default, bool) else default}"
                elif isinstance(default, str):
                    definition += " NOT NULL DEFAULT '{}'".format(default.replace("'", "''"))
                else:
                    raise OutdatedDatabase(
                        f"{database_url.removeprefix('sqlite://')} is from an older version (no column "
                        f"{meta.db_table}.{column}); delete it to start afresh"
                    )
            await connection.execute_script(f'ALTER TABLE "{meta.db_table}" ADD COLUMN {definition}')
            added.append(f"{meta.db_table}.{column}")
    return added


async def close_database() -> None:
    await Tortoise.close_connections()


async def apply_migrations(database_url: str) -> list[str]:
    """Apply the committed aerich migrations; returns the versions applied (empty when current)."""
    from aerich import Command

    command = Command(tortoise_config=tortoise_config(database_url), app=APP, location=str(MIGRATIONS_DIR))
    await command.init()
    try:
        return await command.upgrade(run_in_transaction=True)
    finally:
        await Tortoise.close_connections()


async def database_answers() -> bool:
    """Whether the database answers a trivial query now (readiness)."""
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception:  # any failure at all means "not ready"
        return False
    return True

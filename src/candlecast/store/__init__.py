"""The store: the Postgres schema, its migrations, the embedded default database and every SQL
statement of the project, behind typed functions.

Other components never write SQL; they call the functions re-exported here. One dialect: PostgreSQL.
"""

from candlecast.store.db import connect, create_engine_for, resolve_database_url
from candlecast.store.migrate import current_revision, head_revision, upgrade

__all__ = [
    "connect",
    "create_engine_for",
    "current_revision",
    "head_revision",
    "resolve_database_url",
    "upgrade",
]

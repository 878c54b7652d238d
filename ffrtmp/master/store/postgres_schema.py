"""The PostgreSQL store's schema: versioned migrations, each in its own transaction, applied by a master only.

Every migration takes `pg_advisory_xact_lock(MIGRATION_LOCK)` first, so two masters starting together apply
each migration once: the second waits for the first's commit, then finds the version recorded and skips it
(the lock is a transaction lock, so a master that dies mid-migration releases it with its rollback).

Why the hot table stays small without an archive table: every dispatch query reads a partial index of
pending jobs (`jobs_lanes`, `jobs_pending`) and the few active ones (`jobs_active`), so its cost follows the
number of pending and running jobs, never the terminal ones piling up behind them. Moving terminal jobs to an
archive would make every read by id a union and a retry a move back; the partial indexes give dispatch the
same bound with one table. History, attempts and logs are separate append-mostly tables nothing on the
dispatch path reads. `fillfactor` leaves room on each page for a job's next status to be written in place.
Each claim leaves a dead entry at a lane's head until vacuum removes it (index probes step over them), so
`jobs` is vacuumed after 1% of its rows changed instead of PostgreSQL's default 20%.

Text columns compared by range or sorted (ids, requirement keys, tenants, names) use the "C" collation:
byte order, as in SQLite, whatever the database's locale (a prefix range on ids depends on it).
JSON columns stay text: the store never looks inside them, and the values round-trip as in SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from ffrtmp.master.store.postgres_files import POSTGRES_SCHEMA

MIGRATION_LOCK = 0x66667274_6D70  # 'ffrtmp' as a bigint: the advisory lock key of schema changes


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS = (
    Migration(1, "initial", (
        """CREATE TABLE jobs (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text COLLATE "C" NOT NULL UNIQUE,
            status text NOT NULL,
            scenario text NOT NULL,
            queue text COLLATE "C" NOT NULL,
            priority text COLLATE "C" NOT NULL,
            weight integer NOT NULL,
            engine text NOT NULL,
            params text NOT NULL,
            labels text NOT NULL DEFAULT '{}',
            tenant text COLLATE "C" NOT NULL DEFAULT '',
            max_retries integer NOT NULL,
            timeout double precision,
            attempts integer NOT NULL DEFAULT 0,
            node text,
            progress double precision,
            created_at double precision NOT NULL,
            started_at double precision,
            finished_at double precision,
            not_before double precision NOT NULL DEFAULT 0,
            error text,
            failure text,
            output text,
            metrics text NOT NULL DEFAULT '{}',
            avoid text NOT NULL DEFAULT '[]',
            reason text,
            log_bytes bigint NOT NULL DEFAULT 0,
            log_dropped bigint NOT NULL DEFAULT 0,
            needs text COLLATE "C" NOT NULL DEFAULT ''
        ) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
                autovacuum_analyze_scale_factor = 0.02)""",
        # The dispatch lanes (store/dispatch.py): one probe per lane, pending jobs only.
        "CREATE INDEX jobs_lanes ON jobs (needs, tenant, weight, seq) WHERE status = 'pending'",
        "CREATE INDEX jobs_pending ON jobs (seq) WHERE status = 'pending'",
        "CREATE INDEX jobs_active ON jobs (seq) WHERE status IN ('assigned', 'running')",
        "CREATE INDEX jobs_by_tenant_seq ON jobs (tenant, seq)",
        "CREATE INDEX jobs_pending_by_tenant ON jobs (tenant) WHERE status = 'pending'",
        "CREATE INDEX jobs_with_logs ON jobs (finished_at) WHERE log_bytes > 0 AND finished_at IS NOT NULL",
        """CREATE TABLE attempts (
            job_seq bigint NOT NULL,
            attempt integer NOT NULL,
            node text NOT NULL,
            status text NOT NULL,
            assigned_at double precision NOT NULL,
            started_at double precision,
            finished_at double precision,
            error text,
            failure text,
            PRIMARY KEY (job_seq, attempt)
        )""",
        "CREATE INDEX attempts_active ON attempts (node) WHERE status IN ('assigned', 'running')",
        """CREATE TABLE history (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job_seq bigint NOT NULL,
            at double precision NOT NULL,
            status text NOT NULL,
            attempt integer,
            node text,
            reason text
        )""",
        "CREATE INDEX history_by_job ON history (job_seq, id)",
        """CREATE TABLE nodes (
            name text COLLATE "C" PRIMARY KEY,
            fingerprint text NOT NULL,
            status text NOT NULL,
            version text NOT NULL,
            slots integer NOT NULL,
            engines text NOT NULL,
            encoders text NOT NULL DEFAULT '{}',
            labels text NOT NULL DEFAULT '{}',
            resources text NOT NULL DEFAULT '{}',
            first_seen double precision NOT NULL,
            last_seen double precision NOT NULL,
            curve_key text,
            api_key text
        )""",
        """CREATE TABLE logs (
            job_id text COLLATE "C" NOT NULL,
            attempt integer NOT NULL,
            seq bigint NOT NULL,
            at double precision NOT NULL,
            stream text NOT NULL,
            line text NOT NULL
        )""",
        "CREATE INDEX logs_by_job ON logs (job_id, attempt, seq)",
        """CREATE TABLE api_keys (
            id text PRIMARY KEY,
            hash text NOT NULL,
            role text NOT NULL,
            tenant text NOT NULL,
            note text NOT NULL DEFAULT '',
            created_at double precision NOT NULL,
            revoked_at double precision,
            node text
        )""",
        """CREATE TABLE tenants (
            name text COLLATE "C" PRIMARY KEY,
            max_pending integer,
            max_running integer,
            queues text,
            priorities text
        )""",
        """CREATE TABLE submit_keys (
            tenant text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            ids text NOT NULL,
            created_at double precision NOT NULL,
            PRIMARY KEY (tenant, key)
        )""",
        "CREATE INDEX submit_keys_by_age ON submit_keys (created_at)",
    )),
    Migration(2, "leadership", (
        # One row: the lease several masters on this database compete for. Logged (unlike River's UNLOGGED
        # table): the term must survive a crash of the database, or an old leader's term could come back.
        """CREATE TABLE leader_lease (
            name text PRIMARY KEY DEFAULT 'default' CHECK (name = 'default'),
            holder text NOT NULL,
            address text NOT NULL,
            term bigint NOT NULL,
            expires_at timestamptz NOT NULL
        )""",
        """CREATE TABLE masters (
            name text COLLATE "C" PRIMARY KEY,
            address text NOT NULL,
            role text NOT NULL,
            last_seen timestamptz NOT NULL
        )""",
    )),
    Migration(3, "files", POSTGRES_SCHEMA),  # stored files, a job's input and outputs: store/postgres_files.py
)

LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


def tables(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
    return [str(row[0]) for row in rows.fetchall()]


def applied(conn: psycopg.Connection[Any]) -> set[int] | None:
    """The versions applied to this database; None when it has no ledger (new, or not ffrtmp's)."""
    if "schema_migrations" not in tables(conn):
        return None
    return {int(row[0]) for row in conn.execute("SELECT version FROM schema_migrations").fetchall()}


def pending(conn: psycopg.Connection[Any]) -> list[Migration]:
    done = applied(conn) or set()
    return [migration for migration in MIGRATIONS if migration.version not in done]


def unknown_versions(conn: psycopg.Connection[Any]) -> list[int]:
    """Versions in the ledger this ffrtmp does not know: a newer ffrtmp wrote the database."""
    known = {migration.version for migration in MIGRATIONS}
    return sorted((applied(conn) or set()) - known)


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply every pending migration, each in its own transaction under the migration lock; returns the
    names applied by this call (none when another master got there first)."""
    done: list[str] = []
    for migration in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(LEDGER)
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s",
                            (migration.version,)).fetchone() is not None:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                         (migration.version, migration.name))
            done.append(migration.name)
    return done

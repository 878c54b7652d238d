"""The master database's schema, as sqlite-utils migrations applied in order when a store opens."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

from ffrtmp.master.store.files import m010_files
from ffrtmp.master.store.lease_sqlite import m009_leader_lease

MIGRATIONS = Migrations("ffrtmp")


@MIGRATIONS()
def m001_initial(db: sqlite_utils.Database) -> None:
    for statement in (
        """CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL,
            scenario TEXT NOT NULL,
            queue TEXT NOT NULL,
            priority TEXT NOT NULL,
            weight INTEGER NOT NULL,
            engine TEXT NOT NULL,
            params TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            tenant TEXT NOT NULL DEFAULT '',
            max_retries INTEGER NOT NULL,
            timeout REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            node TEXT,
            progress REAL,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            not_before REAL NOT NULL DEFAULT 0,
            error TEXT,
            failure TEXT,
            output TEXT,
            metrics TEXT NOT NULL DEFAULT '{}',
            avoid TEXT NOT NULL DEFAULT '[]',
            reason TEXT
        )""",
        # The dispatch order (docs/design.md): weight, then FIFO. The index matches the ORDER BY exactly.
        "CREATE INDEX jobs_dispatch ON jobs(weight DESC, seq) WHERE status = 'pending'",
        "CREATE INDEX jobs_by_status ON jobs(status, seq)",
        """CREATE TABLE attempts (
            job_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            node TEXT NOT NULL,
            status TEXT NOT NULL,
            assigned_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            error TEXT,
            failure TEXT,
            PRIMARY KEY (job_id, attempt)
        ) WITHOUT ROWID""",
        "CREATE INDEX attempts_active ON attempts(node) WHERE status IN ('assigned', 'running')",
        """CREATE TABLE history (
            job_id TEXT NOT NULL,
            at REAL NOT NULL,
            status TEXT NOT NULL,
            attempt INTEGER,
            node TEXT,
            reason TEXT
        )""",
        "CREATE INDEX history_by_job ON history(job_id)",
        """CREATE TABLE nodes (
            name TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            status TEXT NOT NULL,
            version TEXT NOT NULL,
            slots INTEGER NOT NULL,
            engines TEXT NOT NULL,
            encoders TEXT NOT NULL DEFAULT '{}',
            labels TEXT NOT NULL DEFAULT '{}',
            resources TEXT NOT NULL DEFAULT '{}',
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL
        )""",
        """CREATE TABLE logs (
            job_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            at REAL NOT NULL,
            stream TEXT NOT NULL,
            line TEXT NOT NULL
        )""",
        "CREATE INDEX logs_by_job ON logs(job_id, attempt, seq)",
    ):
        db.execute(statement)


@MIGRATIONS()
def m002_log_accounting(db: sqlite_utils.Database) -> None:
    """Per-job log size for the cap and for retention by total size."""
    for statement in (
        "ALTER TABLE jobs ADD COLUMN log_bytes INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN log_dropped INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX jobs_with_logs ON jobs(finished_at) WHERE log_bytes > 0 AND finished_at IS NOT NULL",
    ):
        db.execute(statement)


@MIGRATIONS()
def m003_keys_and_tenants(db: sqlite_utils.Database) -> None:
    """API keys with roles and tenants (stored hashed), per-tenant quotas, and each node's CURVE key."""
    for statement in (
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            hash TEXT NOT NULL,
            role TEXT NOT NULL,
            tenant TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            revoked_at REAL
        )""",
        """CREATE TABLE tenants (
            name TEXT PRIMARY KEY,
            max_pending INTEGER,
            max_running INTEGER
        )""",
        "ALTER TABLE nodes ADD COLUMN curve_key TEXT",
        "CREATE INDEX jobs_by_tenant ON jobs(tenant, status)",
    ):
        db.execute(statement)


@MIGRATIONS()
def m004_tenant_listing(db: sqlite_utils.Database) -> None:
    """A tenant's listing newest first without sorting its jobs, and its pending count for quotas.

    Neither index holds the status of every job: a job changes status four times in its life, and an
    index on it would be rewritten each time (these are what the hot path pays for).
    """
    for statement in (
        "DROP INDEX jobs_by_tenant",
        "CREATE INDEX jobs_by_tenant_seq ON jobs(tenant, seq)",
        "CREATE INDEX jobs_pending_by_tenant ON jobs(tenant) WHERE status = 'pending'",
    ):
        db.execute(statement)


@MIGRATIONS()
def m005_attempts_and_history_by_seq(db: sqlite_utils.Database) -> None:
    """Attempts and history keyed by the job's `seq`, not its random id.

    A random key scatters every write over the whole index: finishing 200 jobs touched about 200 pages of
    each, and each page went to the WAL at commit. Jobs in flight have neighbouring seqs, so keyed by seq a
    batch of them shares a few pages (measured: the commits of the job lifecycle took 5x less time).
    """
    for statement in (
        """CREATE TABLE attempts_by_seq (
            job_seq INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            node TEXT NOT NULL,
            status TEXT NOT NULL,
            assigned_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            error TEXT,
            failure TEXT,
            PRIMARY KEY (job_seq, attempt)
        ) WITHOUT ROWID""",
        """INSERT INTO attempts_by_seq SELECT j.seq, a.attempt, a.node, a.status, a.assigned_at, a.started_at,
            a.finished_at, a.error, a.failure FROM attempts a JOIN jobs j ON j.id = a.job_id""",
        "DROP TABLE attempts",
        "ALTER TABLE attempts_by_seq RENAME TO attempts",
        "CREATE INDEX attempts_active ON attempts(node) WHERE status IN ('assigned', 'running')",
        """CREATE TABLE history_by_seq (
            job_seq INTEGER NOT NULL,
            at REAL NOT NULL,
            status TEXT NOT NULL,
            attempt INTEGER,
            node TEXT,
            reason TEXT
        )""",
        """INSERT INTO history_by_seq SELECT j.seq, h.at, h.status, h.attempt, h.node, h.reason
            FROM history h JOIN jobs j ON j.id = h.job_id ORDER BY h.rowid""",
        "DROP TABLE history",
        "ALTER TABLE history_by_seq RENAME TO history",
        "CREATE INDEX history_by_job ON history(job_seq)",
    ):
        db.execute(statement)


@MIGRATIONS()
def m006_key_scopes(db: sqlite_utils.Database) -> None:
    """Worker keys scoped to tenants and node names, nodes bound to their key, per-tenant queues and priorities.

    Worker keys made before this served every tenant whatever their tenant said: they keep doing so (`*`).
    """
    for statement in (
        "ALTER TABLE api_keys ADD COLUMN node TEXT",
        "UPDATE api_keys SET tenant = '*' WHERE role = 'worker'",
        "ALTER TABLE nodes ADD COLUMN api_key TEXT",
        "ALTER TABLE tenants ADD COLUMN queues TEXT",
        "ALTER TABLE tenants ADD COLUMN priorities TEXT",
    ):
        db.execute(statement)


@MIGRATIONS()
def m007_submit_keys(db: sqlite_utils.Database) -> None:
    """Idempotency keys of submits: a repeated key (a client retrying a chunk, a rerun of `--from`) gets the
    ids it was given the first time instead of new jobs. Kept FFRTMP_SUBMIT_KEY_TTL (24 h), per tenant."""
    for statement in (
        """CREATE TABLE submit_keys (
            tenant TEXT NOT NULL,
            key TEXT NOT NULL,
            ids TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (tenant, key)
        ) WITHOUT ROWID""",
        "CREATE INDEX submit_keys_by_age ON submit_keys(created_at)",
    ):
        db.execute(statement)


@MIGRATIONS()
def m008_dispatch_lanes(db: sqlite_utils.Database) -> None:
    """Each job's requirements key (`needs`) and an index of pending jobs by (needs, tenant, weight, seq).

    Dispatch reads the head of each lane and skips whole requirement groups no free node can take, so jobs
    nobody can run no longer stop the scan (store/dispatch.py).
    """
    from ffrtmp.master.columns import from_json
    from ffrtmp.master.store.dispatch import needs_key

    db.execute("ALTER TABLE jobs ADD COLUMN needs TEXT NOT NULL DEFAULT ''")
    rows = db.execute("SELECT seq, engine, params, labels FROM jobs").fetchall()
    db.conn.executemany("UPDATE jobs SET needs = ? WHERE seq = ?",
                        [(needs_key(engine, from_json(params, {}), from_json(labels, {})), seq)
                         for seq, engine, params, labels in rows])
    db.execute("CREATE INDEX jobs_lanes ON jobs(needs, tenant, weight, seq) WHERE status = 'pending'")
    db.execute("DROP INDEX jobs_dispatch")  # its order is the lanes' now: one index less to keep on every write


MIGRATIONS()(m009_leader_lease)  # the leader lease and the masters seen: store/lease_sqlite.py
MIGRATIONS()(m010_files)  # stored files, a job's input and outputs, tenants' byte quotas: store/files.py

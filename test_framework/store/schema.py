"""The store's schema and its migrations, versioned with `PRAGMA user_version`.

Each migration is a list of statements that takes the schema from version N-1 to N; a store from a
newer engine (a version above ours) is not touched but moved aside by the caller.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: runs, per-attempt results, per-test statistics, collection cache, capacity samples, deps.
    (
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            project TEXT NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL,
            argv TEXT NOT NULL DEFAULT '[]',
            profile TEXT,
            categories TEXT,
            exit_code INTEGER,
            duration REAL,
            counts TEXT,
            interrupted INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE results (
            run_id TEXT NOT NULL,
            nodeid TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            duration REAL NOT NULL,
            shard_id INTEGER,
            message TEXT,
            longrepr TEXT,
            PRIMARY KEY (run_id, nodeid, attempt)
        )""",
        "CREATE INDEX results_by_nodeid ON results (nodeid)",
        """CREATE TABLE test_stats (
            project TEXT NOT NULL,
            nodeid TEXT NOT NULL,
            ewma_duration REAL NOT NULL,
            runs INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            flakes INTEGER NOT NULL DEFAULT 0,
            last_outcome TEXT,
            last_run_id TEXT,
            updated_at REAL,
            PRIMARY KEY (project, nodeid)
        )""",
        """CREATE TABLE collections (
            fingerprint TEXT PRIMARY KEY,
            rootdir TEXT NOT NULL,
            nodeids TEXT NOT NULL,
            positionals TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE capacity_samples (
            run_id TEXT NOT NULL,
            t REAL NOT NULL,
            old INTEGER NOT NULL,
            new INTEGER NOT NULL,
            reason TEXT NOT NULL,
            cpu_percent REAL,
            memory_available INTEGER,
            waiting INTEGER
        )""",
        """CREATE TABLE deps (
            project TEXT NOT NULL,
            test_file TEXT NOT NULL,
            dep_file TEXT NOT NULL,
            PRIMARY KEY (project, test_file, dep_file)
        )""",
    ),
    # 2: what each test costs (CPU seconds, peak RSS) and collection constraints (serial,
    # resources), so the planner and the monitor can use them.
    (
        "ALTER TABLE results ADD COLUMN cpu_time REAL",
        "ALTER TABLE results ADD COLUMN max_rss INTEGER",
        "ALTER TABLE test_stats ADD COLUMN ewma_cpu REAL",
        "ALTER TABLE test_stats ADD COLUMN max_rss INTEGER",
        "ALTER TABLE collections ADD COLUMN constraints TEXT NOT NULL DEFAULT '{}'",
    ),
    # 3: test files whose tests need pytest's context (the whole collection, the file in
    # order): later runs keep them whole, in order, in a fully collected worker, until the file
    # changes (its digest).
    (
        """CREATE TABLE context_needs (
            project TEXT NOT NULL,
            file TEXT NOT NULL,
            why TEXT NOT NULL,
            nodeid TEXT NOT NULL,
            file_digest TEXT NOT NULL,
            learned_at REAL NOT NULL,
            PRIMARY KEY (project, file)
        )""",
    ),
    # 4: test files whose ids changed between two collections (they embed the time): later
    # runs name their tests with positions too, until the file changes.
    (
        """CREATE TABLE unstable_ids (
            project TEXT NOT NULL,
            file TEXT NOT NULL,
            file_digest TEXT NOT NULL,
            seen_at REAL NOT NULL,
            PRIMARY KEY (project, file)
        )""",
    ),
    # 5: the skip cache (docs/skip-cache.md): per test file, its last complete run's
    # environment, dependencies with their digests and outcomes; the project's file index
    # (digests behind a stat shortcut).
    (
        """CREATE TABLE file_records (
            project TEXT NOT NULL,
            test_file TEXT NOT NULL,
            environment TEXT NOT NULL,
            dependencies TEXT NOT NULL,
            outcomes TEXT NOT NULL,
            recorded_at REAL NOT NULL,
            PRIMARY KEY (project, test_file)
        )""",
        """CREATE TABLE file_index (
            project TEXT NOT NULL,
            path TEXT NOT NULL,
            mtime_ns INTEGER NOT NULL,
            size INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            digest TEXT NOT NULL,
            indexed_at_ns INTEGER NOT NULL,
            PRIMARY KEY (project, path)
        )""",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)

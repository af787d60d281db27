"""The results store: one SQLite file in WAL mode (connection.py opens and migrates it, with
aiosqlite), what each event adds to it (rows.py), the single writer (writer.py) and the queries
that read it back (queries.py).

Importing this package imports nothing else, so the pytest plugin can use the SQL and the
schema without the engine's asynchronous connection.
"""

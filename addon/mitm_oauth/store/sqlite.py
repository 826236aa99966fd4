"""The store for one machine: a SQLite file that several mitmdump processes share.

WAL mode lets readers go on while one process writes; each statement that takes or
changes a lock is a single atomic statement. The file is made 0600, and deleting it at
any time is safe: a process that finds another file (or none) under the path opens it
anew, and the tokens are fetched again. Every operation runs in one worker thread, and a
caller that waits longer than the timeout goes on without the store.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .base import DEFAULT_TIMEOUT, Stored, StoreError

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS purges (
    key TEXT NOT NULL, fingerprint TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (key, fingerprint)
);
"""
BUSY_TIMEOUT_MS = 200
"""How long SQLite itself waits for another process's write: less than the caller's timeout."""


class SQLiteStore:
    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self.description = f"sqlite:{path}"
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="oauth-store")
        self._db: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None

    def check(self) -> None:
        """Open the file now, at start-up: raises StoreError when it cannot be made or read."""
        self._executor.submit(self._connection).result()

    async def get(self, key: str) -> Stored | None:
        def work(db: sqlite3.Connection) -> Stored | None:
            now = time.time()
            row = db.execute(
                "SELECT value, expires_at FROM tokens WHERE key = ? AND expires_at > ?", (key, now)
            ).fetchone()
            if row is None or not isinstance(row[0], bytes) or not isinstance(row[1], float):
                return None  # nothing, or nothing this code wrote: a miss
            return Stored(row[0], row[1] - now)

        return await self._run(work)

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        def work(db: sqlite3.Connection) -> None:
            now = time.time()
            db.execute("DELETE FROM tokens WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT OR REPLACE INTO tokens (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, now + ttl),
            )

        await self._run(work)

    async def delete_if(self, key: str, value: bytes) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            return (
                db.execute("DELETE FROM tokens WHERE key = ? AND value = ?", (key, value)).rowcount
                == 1
            )

        return await self._run(work)

    async def acquire(self, lock: str, owner: str, ttl: float) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            now = time.time()
            taken = db.execute(
                "INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "expires_at = excluded.expires_at WHERE locks.expires_at <= ?",
                (lock, owner, now + ttl, now),
            )
            return taken.rowcount == 1

        return await self._run(work)

    async def extend(self, lock: str, owner: str, ttl: float) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            extended = db.execute(
                "UPDATE locks SET expires_at = ? WHERE name = ? AND owner = ?",
                (time.time() + ttl, lock, owner),
            )
            return extended.rowcount == 1

        return await self._run(work)

    async def release(self, lock: str, owner: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (lock, owner))

        await self._run(work)

    async def mark_purged(self, key: str, fingerprint: str, ttl: float) -> None:
        def work(db: sqlite3.Connection) -> None:
            now = time.time()
            db.execute("DELETE FROM purges WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT OR REPLACE INTO purges (key, fingerprint, expires_at) VALUES (?, ?, ?)",
                (key, fingerprint, now + ttl),
            )

        await self._run(work)

    async def purged(self) -> set[tuple[str, str]]:
        def work(db: sqlite3.Connection) -> set[tuple[str, str]]:
            rows = db.execute(
                "SELECT key, fingerprint FROM purges WHERE expires_at > ?", (time.time(),)
            )
            return {(key, fingerprint) for key, fingerprint in rows}

        return await self._run(work)

    async def count(self) -> int:
        def work(db: sqlite3.Connection) -> int:
            (n,) = db.execute(
                "SELECT count(*) FROM tokens WHERE expires_at > ?", (time.time(),)
            ).fetchone()
            return int(n)

        return await self._run(work)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._do, work)
        try:
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise StoreError(
                f"{self.description}: no answer within {self.timeout * 1000:.0f} ms"
            ) from None

    def _do(self, work: Callable[[sqlite3.Connection], T]) -> T:
        db = self._connection()
        try:
            with db:  # one transaction: committed, or rolled back on an error
                return work(db)
        except sqlite3.Error as e:
            self._close()
            raise StoreError(f"{self.description}: {e}") from None

    def _connection(self) -> sqlite3.Connection:
        """The open database, opened anew when the file was deleted or replaced."""
        try:
            current = os.stat(self.path)
            found: tuple[int, int] | None = (current.st_dev, current.st_ino)
        except FileNotFoundError:
            found = None
        if self._db is not None and found == self._file:
            return self._db
        self._close()
        try:
            _own(self.path)
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise StoreError(f"{self.description}: cannot open it: {reason}") from None
        stat = os.stat(self.path)
        self._db, self._file = db, (stat.st_dev, stat.st_ino)
        return db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
            self._file = None


def _own(path: str) -> None:
    """Make the file if it is missing, readable by its owner only; refuse a symbolic link or a
    file another user owns (in a shared folder, someone else's file could feed us tokens)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid():
            raise StoreError(f"sqlite:{path}: owned by another user: not used")
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)

"""Catalog: an SQLite cache of what listing each run of one logdir read, so that a dashboard starts warm.

One database per logdir (named by a hash of its real path) in a cache directory outside the logdir, which may be
read-only or shared: `$KERASCOPE_CACHE_DIR`, else `$XDG_CACHE_HOME/kerascope`, else `~/.cache/kerascope`. A row
holds a run's listing snapshot (run.json, status.json and the summary as read) and the stamps (size, mtime, inode) of
the files it was read from; it is used only while every stamp still matches, so the run directories stay the truth.
WAL mode and a busy timeout let several dashboard processes share it; a corrupt or foreign database is deleted and
rebuilt from the run directories. Every failure degrades to "no cache", never to an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from typing import Any

CACHE_ENV = "KERASCOPE_CACHE_DIR"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000
LOAD_CHUNK = 500  # catalog rows decoded together

log = logging.getLogger(__name__)


def cache_dir() -> str:
    """Where catalogs live: $KERASCOPE_CACHE_DIR, else $XDG_CACHE_HOME/kerascope, else ~/.cache/kerascope."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return os.path.abspath(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "kerascope")


class Catalog:
    """The cached listing snapshots of the runs under one logdir.

    Args:
        logdir: the runs folder it caches.
        directory: where the database lives (default `cache_dir()`); never inside the logdir.

    Example:
    ```python
    catalog = Catalog("runs")
    store = RunStore("runs", catalog=catalog)   # the store reads and fills it
    print(catalog.path, len(catalog.load()))
    ```
    """

    def __init__(self, logdir: str | os.PathLike[str], directory: str | None = None) -> None:
        self.logdir = os.path.realpath(os.fspath(logdir))
        folder = os.path.abspath(directory or cache_dir())
        digest = hashlib.sha256(self.logdir.encode("utf-8", "surrogateescape")).hexdigest()[:20]
        self.path = os.path.join(folder, f"runs-{digest}.sqlite")
        self.rebuilt: str | None = None  # why the database was deleted and recreated, if it was
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        with self._lock:
            self._connect()

    # -- connection ------------------------------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:  # corrupt, not a database, or another schema: rebuild it
            self._rebuild(exc)
        except OSError as exc:  # the cache folder cannot be created: run without a catalog
            log.warning("kerascope: no catalog (%s)", exc)
            self._conn = None

    def _open(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
        try:
            os.chmod(self.path, 0o600)  # it holds hparams and notes of every run
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # a cache: losing the last transaction on power loss is fine
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"catalog schema {version}, expected {SCHEMA_VERSION}")
            conn.execute("CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, stamps TEXT NOT NULL, "
                         "snapshot TEXT NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            # "root": the key existing caches hold the logdir under. A name that is not UTF-8 (surrogate escapes,
            # which SQLite refuses to encode) is stored with its odd bytes written as \xNN.
            root = os.fsencode(self.logdir).decode("utf-8", "backslashreplace")
            conn.execute("INSERT OR REPLACE INTO info VALUES ('root', ?)", (root,))
            conn.execute("SELECT count(*) FROM runs").fetchone()  # a damaged table raises here, not later
        except BaseException:
            conn.close()
            raise
        return conn

    def _rebuild(self, exc: BaseException) -> None:
        self.rebuilt = f"{type(exc).__name__}: {exc}"
        log.warning("kerascope: catalog %s unusable (%s): rebuilt from the run directories", self.path, exc)
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(self.path + suffix)
        try:
            self._conn = self._open()
        except (sqlite3.Error, OSError) as again:
            log.warning("kerascope: no catalog (%s)", again)
            self._conn = None

    def _run(self, action: str, work: Any) -> Any:
        """`work(conn)` under the lock; a corrupt database is rebuilt, a busy one skipped (returns None)."""
        with self._lock:
            if self._conn is None:
                return None
            try:
                return work(self._conn)
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    log.info("kerascope: catalog busy, %s skipped", action)
                    return None
                self._rebuild(exc)
            except sqlite3.DatabaseError as exc:
                self._rebuild(exc)
            return None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- rows ------------------------------------------------------------------------------------------------------

    def load(self) -> dict[str, tuple[Any, dict[str, Any]]]:
        """{run id: (stamps, snapshot)} for every cataloged run (rows that do not parse are left out)."""
        def read(conn: sqlite3.Connection) -> dict[str, tuple[Any, dict[str, Any]]]:
            loaded: dict[str, tuple[Any, dict[str, Any]]] = {}
            cursor = conn.execute("SELECT id, stamps, snapshot FROM runs")
            while chunk := cursor.fetchmany(LOAD_CHUNK):
                loaded.update(_decoded(chunk))
            return loaded

        return self._run("load", read) or {}

    def put(self, rows: Iterable[tuple[str, Any, dict[str, Any]]]) -> None:
        """Store (run id, stamps, snapshot) rows in one transaction (a run whose id is not UTF-8 stays uncached)."""
        encoded = [(run_id, json.dumps(stamps), json.dumps(snapshot, allow_nan=True)) for run_id, stamps, snapshot
                   in rows if _storable(run_id)]
        if not encoded:
            return

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?)", encoded)

        self._run("put", write)

    def delete(self, run_ids: Iterable[str]) -> None:
        """Forget runs whose directories are gone."""
        ids = [(run_id,) for run_id in run_ids if _storable(run_id)]
        if not ids:
            return

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("DELETE FROM runs WHERE id = ?", ids)

        self._run("delete", write)


def _storable(run_id: str) -> bool:
    """Whether SQLite can hold `run_id` as text: a directory name with bytes that are not UTF-8 comes as surrogate
    escapes, which it refuses to encode (the run is then read from its files each time)."""
    try:
        run_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _decoded(rows: list[tuple[str, str, str]]) -> dict[str, tuple[Any, dict[str, Any]]]:
    """{run id: (stamps, snapshot)} of catalog rows (rows that do not parse are left out).

    The rows' JSON is decoded as one document: its objects then share their keys' strings (the decoder keeps one
    string per key and document), which takes a third less memory than a document per row.
    """
    try:
        stamps = json.loads("[" + ",".join(row[1] for row in rows) + "]")
        snapshots = json.loads("[" + ",".join(row[2] for row in rows) + "]")
        # strict: a row holding two values, or none, would shift the others (ValueError: then row by row)
        return {row[0]: (_tuples(stamp), snapshot) for row, stamp, snapshot in zip(rows, stamps, snapshots,
                                                                                 strict=True)}
    except (ValueError, RecursionError):
        pass
    decoded = {}  # a row that is not one JSON value each: row by row, leaving it out
    for run_id, stamp, snapshot in rows:
        try:
            decoded[run_id] = (_tuples(json.loads(stamp)), json.loads(snapshot))
        except (ValueError, RecursionError):
            continue
    return decoded


def _tuples(value: Any) -> Any:
    """JSON lists back into the tuples they were written from (stamps compare as tuples)."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value

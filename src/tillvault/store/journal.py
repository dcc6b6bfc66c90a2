"""The hot-tier journal: SQLite in WAL mode, an append-only hash-chained event log,
current-state tables updated in the same transaction, and idempotent writes.

Failure modes and what happens:

- The disk fills during a commit (SQLITE_FULL / ENOSPC): SQLite rolls the transaction back;
  committed data stays intact; the write raises ``StorageFull``. The journal stays usable and
  accepts writes again once space returns.
- An I/O error (EIO, or ENOSPC reported by fsync): the transaction is rolled back, the
  connection is closed and reopened on the next call, and ``DeviceFailed`` is raised.
- A process killed at any moment: every write whose ``write()`` returned is durable
  (``synchronous=FULL``: the WAL is fsynced at each commit); anything else was never
  acknowledged and is absent as a whole.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tillvault.errors import DeviceFailed, InvalidInput, JournalCorrupt, StorageFull, TillVaultError
from tillvault.store import schema
from tillvault.store.encoding import (
    Event,
    canonical,
    chain_hash,
    decode,
    event_checksum,
    row_intact,
)
from tillvault.store.fsutil import fsync_dir

PAGE_SIZE = 4096
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CANTOPEN = 14
SQLITE_CONSTRAINT = 19
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_NOTADB = 26

#: Write classes. ``sale`` writes are admitted above the reserve; ``settlement`` writes may use it.
SALE = "sale"
SETTLEMENT = "settlement"


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


@dataclass
class VerifyReport:
    """Result of a journal verification (``scrub``)."""

    ok: bool = True
    checked: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)

    def add(self, where: str, problem: str, **detail: Any) -> None:
        """Record one problem; the first one added is the first bad record."""
        self.ok = False
        self.problems.append({"where": where, "problem": problem, **detail})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"ok", "checked", "problems"}``."""
        return {"ok": self.ok, "checked": self.checked, "problems": self.problems}


@dataclass(frozen=True)
class WriteResult:
    """What a journal write returns: the caller's result and the sequence numbers written."""

    result: Any
    seqs: tuple[int, ...]
    replayed: bool = False


def map_sqlite_error(exc: sqlite3.Error, *, path: Path, device: str) -> TillVaultError:
    """Translate an engine error into TillVault's hierarchy (by meaning)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    if primary == SQLITE_FULL or "disk is full" in text:
        return StorageFull(
            f"storage device {device} is full: the write to {path.name} was rolled back, nothing committed "
            "was lost; settle now (tillvault settle) or free space (tillvault cleanup)",
            device=device,
            message_zh=f"存储设备{device}已满:写入已回滚,已保存的数据未丢失;请立即结算或清理空间",
        )
    if primary in (SQLITE_CORRUPT, SQLITE_NOTADB) or "malformed" in text:
        return JournalCorrupt(f"journal {path} on device {device} is corrupt: {text}; run tillvault scrub")
    if primary in (SQLITE_IOERR, SQLITE_READONLY, SQLITE_CANTOPEN) or "I/O error" in text:
        return DeviceFailed(
            f"storage device {device} reported an I/O error on {path.name} ({text}); the write was rolled "
            "back; check or replace the device"
        )
    if primary == SQLITE_CONSTRAINT:
        return InvalidInput(f"journal {path.name}: a natural key is already taken ({text}); nothing was written")
    # BUSY, LOCKED and the like: not the device's fault (no failover), but the write did not happen.
    return TillVaultError(f"journal {path.name} on device {device}: {text}; nothing was written")


SQLITE_FCNTL_PERSIST_WAL = 10
#: ``RETURNING`` (SQLite 3.35+) lets a counter advance in one statement.
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)


def _as_bytes(value: Any) -> bytes:
    # A tampered or damaged row may hold TEXT where BLOB belongs: compare it as bytes, never crash.
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return b"" if value is None else bytes(value)


def persist_wal(conn: sqlite3.Connection, path: Path) -> bool:
    """Keep the WAL and shared-memory files when the last connection closes.

    By default SQLite deletes the WAL on close, so the next process's first write must
    create it again: on a full disk that write fails, settlement included. With
    ``SQLITE_FCNTL_PERSIST_WAL`` the pre-grown WAL stays (bounded by ``journal_size_limit``)
    and is reused. Python's ``sqlite3`` does not expose ``sqlite3_file_control``, so this
    calls it through ctypes on the connection's handle, after checking that the handle
    really is this database (by its file name); it returns False, changing nothing, where
    that check fails.
    """
    try:
        import _sqlite3
        import ctypes

        lib = ctypes.CDLL(_sqlite3.__file__)
        lib.sqlite3_db_filename.restype = ctypes.c_char_p
        lib.sqlite3_db_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.sqlite3_file_control.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
        # CPython's connection object: PyObject_HEAD, then the sqlite3* handle.
        handle = ctypes.c_void_p.from_address(id(conn) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
        if not handle:
            return False
        name = lib.sqlite3_db_filename(handle, b"main")
        if not name or os.path.realpath(name.decode()) != os.path.realpath(path):
            return False
        flag = ctypes.c_int(1)
        return lib.sqlite3_file_control(handle, b"main", SQLITE_FCNTL_PERSIST_WAL, ctypes.byref(flag)) == 0
    except (OSError, AttributeError, ValueError, ImportError):
        return False


#: Filesystem bytes a free-page top-up leaves untouched (the WAL's and the checkpoint's own needs).
GROW_SLACK_BYTES = 64 * 1024


class RecordingConnection:
    """A connection proxy that remembers every statement that changes the database.

    The mirror (device B) replays exactly these statements, with the same parameters, in one
    transaction after the primary committed: both devices then hold the same rows, the same
    events and the same chain (statement-based replication; deterministic because every
    value, time and nonce is already in the parameters).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.recorded: list[tuple[str, Any, bool]] = []

    @staticmethod
    def _changes(sql: str) -> bool:
        head = sql.lstrip()[:7].upper()
        return not (head.startswith("SELECT") or head.startswith("PRAGMA") or head.startswith("WITH"))

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """Execute and record a changing statement."""
        if self._changes(sql):
            self.recorded.append((sql, params, False))
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, seq: Any) -> sqlite3.Cursor:
        """Execute many and record them."""
        rows = list(seq)
        if self._changes(sql):
            self.recorded.append((sql, rows, True))
        return self._conn.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class WriteContext:
    """Handed to a write's function: the connection, the time, and ``emit`` for events."""

    def __init__(self, conn: sqlite3.Connection, ts_ms: int, seq: int, chain: bytes) -> None:
        self.conn = conn
        self.ts_ms = ts_ms
        self.seq = seq
        self.chain = chain
        self.seqs: list[int] = []

    def emit(self, kind: str, body: dict[str, Any]) -> int:
        """Append an event to the chain within this transaction; returns its sequence number."""
        data = canonical(body)
        self.seq += 1
        checksum = event_checksum(self.seq, self.ts_ms, kind, data)
        self.chain = chain_hash(self.chain, checksum)
        self.conn.execute(
            "INSERT INTO events (seq, ts_ms, kind, body, checksum, chain) VALUES (?,?,?,?,?,?)",
            (self.seq, self.ts_ms, kind, data, checksum, self.chain),
        )
        self.seqs.append(self.seq)
        return self.seq


class Journal:
    """The terminal's durable journal in one SQLite file.

    All writes go through :meth:`write`, which appends events to the hash chain and applies
    current-state changes in one SQLite transaction. The object is safe to share between
    threads; writes are serialised.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        device: str = "A",
        wal_limit_bytes: int = 512 * 1024,
        autocheckpoint_pages: int = 64,
    ) -> None:
        self.path = Path(path)
        self.device = device
        self.wal_limit_bytes = wal_limit_bytes
        self.autocheckpoint_pages = autocheckpoint_pages
        self._conn: sqlite3.Connection | None = None
        self.persistent_wal = False
        self._lock = threading.RLock()
        self._tip_seq = 0
        self._tip_chain = b""
        #: Hooks run after each committed write with the write class (space accounting).
        self.after_commit: list[Callable[[str], None]] = []
        #: The journal on the second device, kept identical write by write (or None).
        self.mirror: Journal | None = None
        #: Called with (device, reason) when the mirror fails and is detached (degraded mode).
        self.on_mirror_failure: Callable[[str, str], None] | None = None
        #: Checked before each replication: a non-empty reason detaches the mirror (device gone).
        self.mirror_check: Callable[[], str] | None = None
        #: Called with (failed device, reason) when the primary fails and the mirror takes over.
        self.on_failover: Callable[[str, str], None] | None = None
        #: Called when another connection (another process) is found to have committed: caches go.
        self.on_external_change: list[Callable[[], None]] = []
        self._data_version: int | None = None
        self._file_id: tuple[int, int] | None = None

    # -- connection -------------------------------------------------------------------------
    def open(self) -> Journal:
        """Open (creating if needed) and migrate the database; returns ``self``.

        :raises JournalCorrupt: if the file is not a SQLite database.
        :raises ConfigError: if the schema is newer than this code.
        """
        with self._lock:
            self._connect()
        return self

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA auto_vacuum = NONE")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise DeviceFailed(f"journal {self.path} cannot use WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA journal_size_limit = {self.wal_limit_bytes}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {self.autocheckpoint_pages}")
            conn.execute("PRAGMA foreign_keys = ON")
            # Deleted rows (purged card data) are zeroed in their pages, whatever the build's default.
            conn.execute("PRAGMA secure_delete = ON")
            self.persistent_wal = persist_wal(conn, self.path)
            schema.migrate(conn)
            self._conn = conn
            with contextlib.suppress(OSError):
                st = os.stat(self.path)
                self._file_id = (st.st_dev, st.st_ino)
            reconnect = self._data_version is not None
            self._load_tip()
            if reconnect:  # what was cached before the connection dropped may be stale
                for hook in self.on_external_change:
                    hook()
        except sqlite3.Error as exc:
            raise map_sqlite_error(exc, path=self.path, device=self.device) from exc
        return conn

    def _load_tip(self) -> None:
        conn = self._conn
        assert conn is not None
        # The version first: a commit landing between the two reads then shows as a change at the
        # next catch-up, instead of a new version recorded beside the old tip.
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        row = conn.execute("SELECT seq, chain FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            row = conn.execute("SELECT seq, chain FROM chain_anchor WHERE id = 1").fetchone()
        self._tip_seq, self._tip_chain = int(row[0]), bytes(row[1])
        self._data_version = version

    def _catch_up(self, conn: sqlite3.Connection) -> bool:
        """Reload the chain's tip if another connection committed since this one last looked.

        ``PRAGMA data_version`` changes only for commits made through other connections, so
        this object's own writes cost one pragma and no reload. Returns True if it reloaded.
        """
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if version == self._data_version:
            return False
        self._load_tip()
        for hook in self.on_external_change:
            hook()
        if self.mirror is not None and self.on_mirror_failure is not None:
            # The other process wrote (perhaps without this mirror): the mirror may lack its
            # writes, so it is re-checked against this tip and re-copied before it counts again.
            mirror, self.mirror = self.mirror, None
            mirror._drop_connection()
            self.on_mirror_failure(mirror.device, f"storage device {mirror.device} is behind: another process wrote")
        return True

    def refresh(self) -> bool:
        """Catch up with writes another process made (call after taking the terminal's lock)."""
        with self._lock:
            try:
                return self._catch_up(self._connect())
            except sqlite3.Error as exc:
                raise map_sqlite_error(exc, path=self.path, device=self.device) from exc

    def file_replaced(self) -> bool:
        """True when the file at ``path`` is no longer the one this connection has open (another
        process re-copied the device: the open file is unlinked and would never see a write again)."""
        if self._conn is None or self._file_id is None:
            return False
        try:
            st = os.stat(self.path)
        except OSError:
            return False  # gone or unreadable: the next write reports it (and fails over)
        return (st.st_dev, st.st_ino) != self._file_id

    def reopen(self, path: Path | str, *, device: str) -> None:
        """Point this journal at another device's file (another process failed over to it).

        The mirror is dropped and what was cached about the old file is forgotten (the
        ``on_external_change`` hooks run); the tip is the new file's.
        """
        with self._lock:
            old = (self.path, self.device)
            self._drop_connection()
            self.mirror = None
            self.path, self.device = Path(path), device
            try:
                self._connect()
            except (sqlite3.Error, TillVaultError) as exc:
                # Not half switched: back on the file it had, and the caller told why.
                self.path, self.device = old
                with contextlib.suppress(sqlite3.Error, TillVaultError):
                    self._connect()
                if isinstance(exc, TillVaultError):
                    raise
                raise map_sqlite_error(exc, path=Path(path), device=device) from exc

    def close(self) -> None:
        """Close the connection (checkpointing the WAL when possible)."""
        with self._lock:
            self._drop_connection()

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                # With a size limit set, SQLite truncates a persistent WAL to zero on close;
                # lifting it keeps the pre-grown WAL for the next process.
                self._conn.execute("PRAGMA journal_size_limit = -1")
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (reopened after an I/O error). For reads and for ``write``'s callbacks."""
        with self._lock:
            return self._connect()

    # -- writing ----------------------------------------------------------------------------
    def write(
        self,
        fn: Callable[[WriteContext], Any],
        *,
        idem_key: str | None = None,
        klass: str = SALE,
        ts_ms: int | None = None,
    ) -> WriteResult:
        """Run ``fn`` in one durable SQLite transaction and return its result.

        ``fn(ctx)`` appends events with ``ctx.emit(kind, body)`` and updates current-state
        tables through ``ctx.conn``; everything commits together or not at all. With
        ``idem_key``, a retried write returns the first write's result and writes nothing.

        :raises StorageFull: the engine ran out of space; nothing was written.
        :raises DeviceFailed: an I/O error; nothing was written.
        """
        ts = now_ms() if ts_ms is None else ts_ms
        try:
            return self._write_once(fn, idem_key=idem_key, klass=klass, ts=ts)
        except (DeviceFailed, JournalCorrupt) as exc:
            # The primary device failed (I/O error, corruption): the mirror holds every acknowledged write.
            if self.mirror is None or not self._fail_over(str(exc)):
                raise
            return self._write_once(fn, idem_key=idem_key, klass=klass, ts=ts)

    def _write_once(
        self, fn: Callable[[WriteContext], Any], *, idem_key: str | None, klass: str, ts: int
    ) -> WriteResult:
        with self._lock:
            conn = self._connect()
            # Statements are recorded only for a mirror to replay (one device: nothing to record).
            recorder = RecordingConnection(conn) if self.mirror is not None else None
            target: Any = recorder if recorder is not None else conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Another process may have written since (a second CLI call): chain onto its tip.
                    self._catch_up(conn)
                    if idem_key is not None:
                        row = conn.execute("SELECT seq, result FROM idempotency WHERE key = ?", (idem_key,)).fetchone()
                        if row is not None:
                            conn.execute("ROLLBACK")
                            return WriteResult(decode(row["result"]), (int(row["seq"]),), replayed=True)
                    ctx = WriteContext(target, ts, self._tip_seq, self._tip_chain)
                    result = fn(ctx)
                    if idem_key is not None:
                        target.execute(
                            "INSERT INTO idempotency (key, seq, result) VALUES (?,?,?)",
                            (idem_key, ctx.seq, canonical(result).decode("utf-8")),
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                error = map_sqlite_error(exc, path=self.path, device=self.device)
                if not isinstance(error, StorageFull):
                    self._drop_connection()
                raise error from exc
            self._tip_seq, self._tip_chain = ctx.seq, ctx.chain
            # Acknowledged only once durable on every healthy device.
            if recorder is not None:
                self._replicate(recorder.recorded)
        for hook in self.after_commit:
            hook(klass)
        return WriteResult(result, tuple(ctx.seqs))

    def _replicate(self, statements: list[tuple[str, Any, bool]]) -> None:
        mirror = self.mirror
        if mirror is None or not statements:
            return
        try:
            gone = self.mirror_check() if self.mirror_check is not None else ""
            if gone:
                raise DeviceFailed(gone)
            mirror.replay(statements)
        except (sqlite3.Error, OSError, TillVaultError) as exc:
            self.mirror = None
            mirror._drop_connection()
            if self.on_mirror_failure is not None:
                self.on_mirror_failure(mirror.device, str(exc))

    def replay(self, statements: list[tuple[str, Any, bool]]) -> None:
        """Apply statements recorded on the primary, in one durable transaction (mirror side).

        :raises StorageFull, DeviceFailed: this device could not take them (nothing applied).
        """
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params, many in statements:
                        (conn.executemany if many else conn.execute)(sql, params)
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                error = map_sqlite_error(exc, path=self.path, device=self.device)
                self._drop_connection()
                raise error from exc
            self._load_tip()

    def execute_direct(self, sql: str, params: Any = ()) -> int:
        """A bookkeeping write outside the event log (schedules, samples), on every device; rows changed."""
        with self._lock:
            try:
                n = self._connect().execute(sql, params).rowcount
            except sqlite3.Error as exc:
                raise map_sqlite_error(exc, path=self.path, device=self.device) from exc
            self._replicate([(sql, params, False)])
            return n

    def _fail_over(self, reason: str) -> bool:
        """Make the mirror the primary (the primary failed); returns True if it could."""
        with self._lock:
            mirror = self.mirror
            if mirror is None:
                return False
            try:
                mirror._connect()
                mirror._load_tip()
            except TillVaultError:
                return False
            failed = self.device
            self._drop_connection()
            self.path, self.device = mirror.path, mirror.device
            self._conn, mirror._conn = mirror._conn, None
            self._file_id = mirror._file_id
            self.persistent_wal = mirror.persistent_wal
            self.mirror = None
            self._load_tip()
        if self.on_failover is not None:
            self.on_failover(failed, reason)
        return True

    def resilver(self, target: Journal) -> None:
        """Copy this whole journal onto ``target`` (SQLite's online backup), verify, attach as mirror.

        :raises JournalCorrupt: the copy does not match (tips differ) after copying.
        """
        with self._lock:
            # Copied beside the target and renamed over it: a copy cut short (a kill, a full
            # device) leaves the target as it was, never half of each.
            target.path.parent.mkdir(parents=True, exist_ok=True)
            temp = target.path.with_name(target.path.name + ".resilver")
            for suffix in ("-wal", "-shm", ""):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{temp}{suffix}")
            dest = sqlite3.connect(temp)
            try:
                self._connect().backup(dest)
                dest.execute("PRAGMA journal_mode = WAL")
                dest.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                dest.close()
                for suffix in ("-wal", "-shm", ""):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{temp}{suffix}")
                raise map_sqlite_error(exc, path=target.path, device=target.device) from exc
            dest.close()
            with open(temp, "rb") as f:
                os.fsync(f.fileno())
            target._drop_connection()
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{target.path}{suffix}")
            os.replace(temp, target.path)
            fsync_dir(target.path.parent)
            target.open()
            if target.tip != (self._tip_seq, self._tip_chain):
                raise JournalCorrupt(f"resilvering device {target.device} did not reproduce the journal tip")
            self.mirror = target

    def append(self, kind: str, body: dict[str, Any], *, klass: str = SALE) -> int:
        """Append one event on its own; returns its sequence number."""
        return self.write(lambda ctx: ctx.emit(kind, body), klass=klass).result

    def next_counter(
        self, conn: sqlite3.Connection, name: str, *, start: int = 1, wrap: int = 0, first: int | None = None
    ) -> int:
        """Advance and return counter ``name`` inside a write (``wrap``: restart at ``start`` after it;
        ``first``: the value of a counter that does not exist yet, ``start`` if not given)."""
        first = start if first is None else first
        if _HAS_RETURNING:  # one statement instead of a read and a write (two per sale)
            row = conn.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = "
                "CASE WHEN ? > 0 AND value + 1 > ? THEN ? ELSE value + 1 END RETURNING value",
                (name, first, wrap, wrap, start),
            ).fetchone()
            return int(row[0])
        row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        value = first if row is None else int(row[0]) + 1
        if wrap and value > wrap:
            value = start
        conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        return value

    def counter(self, name: str) -> int | None:
        """Current value of counter ``name`` (``None`` if never advanced)."""
        row = self.conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def set_meta(self, conn: sqlite3.Connection, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` inside a write."""
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, canonical(value).decode("utf-8")),
        )

    def meta(self, key: str, default: Any = None) -> Any:
        """Read a JSON value stored with :meth:`set_meta`."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else decode(row[0].encode("utf-8"))

    # -- reading ----------------------------------------------------------------------------
    def events(self, after_seq: int = 0) -> Iterator[Event]:
        """Events with ``seq > after_seq`` in order."""
        cur = self.conn.execute(
            "SELECT seq, ts_ms, kind, body, checksum, chain FROM events WHERE seq > ? ORDER BY seq",
            (after_seq,),
        )
        for row in cur:
            yield Event(row[0], row[1], row[2], _as_bytes(row[3]), _as_bytes(row[4]), _as_bytes(row[5]))

    @property
    def tip(self) -> tuple[int, bytes]:
        """The last committed sequence number and chain hash."""
        with self._lock:
            self._connect()
            return self._tip_seq, self._tip_chain

    # -- verification -----------------------------------------------------------------------
    def verify(self, *, integrity: bool = True) -> VerifyReport:
        """Check SQLite's integrity, every event checksum, the whole chain and every row checksum.

        Problems are listed in order; the first is the first bad record.
        """
        report = VerifyReport()
        with self._lock:
            try:
                conn = self._connect()
                if integrity:
                    rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
                    if rows != ["ok"]:
                        report.add("sqlite", "integrity_check failed", details=rows[:10])
                anchor = conn.execute("SELECT seq, chain FROM chain_anchor WHERE id = 1").fetchone()
                prev_seq, prev_chain = int(anchor[0]), bytes(anchor[1])
                for event in self.events(prev_seq):
                    report.checked += 1
                    if event.seq != prev_seq + 1:
                        report.add(
                            "events",
                            f"sequence gap: expected {prev_seq + 1}, found {event.seq}",
                            seq=event.seq,
                        )
                    if not event.checksum_ok():
                        report.add("events", f"event {event.seq} ({event.kind}): checksum mismatch", seq=event.seq)
                    elif chain_hash(prev_chain, event.checksum) != event.chain:
                        report.add("events", f"event {event.seq} ({event.kind}): chain link broken", seq=event.seq)
                    prev_seq, prev_chain = event.seq, event.chain
                for row in conn.execute("SELECT * FROM transactions ORDER BY invoice"):
                    report.checked += 1
                    if not row_intact(row):
                        report.add(
                            "transactions",
                            f"transaction invoice {row['invoice']}: row checksum mismatch",
                            invoice=row["invoice"],
                        )
            except sqlite3.DatabaseError as exc:
                report.add("sqlite", str(map_sqlite_error(exc, path=self.path, device=self.device)))
                self._drop_connection()
        return report

    # -- space ------------------------------------------------------------------------------
    def page_stats(self) -> tuple[int, int]:
        """(page count, free page count) of the database file."""
        row = self.conn.execute("SELECT * FROM pragma_page_count(), pragma_freelist_count()").fetchone()
        return int(row[0]), int(row[1])

    def free_page_bytes(self) -> int:
        """Bytes of free pages inside the database file (reusable without growing it)."""
        # One pragma (this runs at every sale's admission): the page count is not needed here.
        return int(self.conn.execute("PRAGMA freelist_count").fetchone()[0]) * PAGE_SIZE

    def grow_free_pages(self, target_bytes: int, *, chunk_pages: int = 0) -> int:
        """Pre-grow free pages until at least ``target_bytes`` are free inside the file.

        Writes filler rows and deletes them in chunks small enough for the bounded WAL,
        checkpointing between chunks so the pages land in the database file. Grows only as far
        as the filesystem has room for (the filler first takes the free pages already there: on
        a full disk it could not give them back, and the reserve would be gone), and stops early,
        without error, if the disk fills anyway. Returns the free-page bytes reached.
        """
        with self._lock:
            conn = self._connect()
            if conn.execute("SELECT EXISTS (SELECT 1 FROM headroom)").fetchone()[0]:
                # Filler of a top-up killed between its rows and their delete: it sits on pages of
                # the reserve, and nothing else would ever remove it (on a full disk the early
                # return below comes first).
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("DELETE FROM headroom")
            free = self.free_page_bytes()
            try:
                st = os.statvfs(self.path.parent)
                # Every page grown is written twice before it settles: into the WAL, then into the
                # database file at the checkpoint (and the filler's DELETE logs it again). Half the
                # room, after the WAL's own limit: a top-up never leaves the WAL a checkpoint it
                # cannot complete (the next commit, a settlement's, would fail).
                room = (st.f_bavail * st.f_frsize - GROW_SLACK_BYTES - self.wal_limit_bytes) // 2
            except OSError:
                room = 0
            target_bytes = min(target_bytes, free + max(0, room) // PAGE_SIZE * PAGE_SIZE)
            if target_bytes <= free:
                return free
            pad = PAGE_SIZE - 200  # one filler row per page
            # Chunks the size of the autocheckpoint also pre-grow the WAL to its working size.
            chunk_pages = chunk_pages or max(8, self.autocheckpoint_pages)
            # Filler rows stay until the end (a chunk must not reuse the pages the last one freed),
            # then one DELETE turns them all into free pages.
            try:
                while True:
                    missing = (target_bytes - self.free_page_bytes() + PAGE_SIZE - 1) // PAGE_SIZE
                    held = conn.execute("SELECT count(*) FROM headroom").fetchone()[0]
                    if missing - held <= 0:
                        break
                    n = min(chunk_pages, missing - held)
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany("INSERT INTO headroom (pad) VALUES (zeroblob(?))", [(pad,)] * n)
                    conn.execute("COMMIT")
                    if held + n < missing:  # more chunks to come: keep the WAL bounded
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                error = map_sqlite_error(exc, path=self.path, device=self.device)
                if not isinstance(error, StorageFull):
                    self._drop_connection()
                    raise error from exc
            try:
                # The pages reach the database file at the next automatic checkpoint.
                conn.execute("DELETE FROM headroom")
            except sqlite3.Error as exc:
                self._drop_connection()
                raise map_sqlite_error(exc, path=self.path, device=self.device) from exc
            return self.free_page_bytes()

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (PASSIVE: never blocks writers)."""
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._connect().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def scrub_wal(self) -> bool:
        """Leave no old frame in the WAL: what was erased (a settled batch's encrypted card
        numbers) must not linger in frames SQLite no longer reads.

        The WAL is persistent and pre-grown, so SQLite rewrites it from the start after each
        checkpoint and frames past the last rewrite keep old page images indefinitely. This
        copies the WAL into the database (a RESTART checkpoint: every frame is then in the
        database and no reader uses the WAL), then, holding the write lock so nothing is written
        meanwhile, overwrites the file with zeros in place. The file keeps its blocks: truncating
        it and growing it again handed them, for a moment, to whatever else writes on a full disk,
        and the settlement then found no room for its WAL. An all-zero WAL reads as empty.
        Returns False when another connection's read kept the checkpoint from completing (it
        does not wait for it: a waiting checkpoint would hold every writer), another connection
        wrote in between, or device B's scrub did not complete; call it again later.

        :raises DeviceFailed: an I/O error.
        """
        wal = Path(f"{self.path}-wal")
        with self._lock:
            conn = self._connect()
            try:
                size = wal.stat().st_size if wal.exists() else 0
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                waited = conn.execute("PRAGMA busy_timeout").fetchone()[0]
                conn.execute("PRAGMA busy_timeout = 0")
                try:
                    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                finally:
                    conn.execute(f"PRAGMA busy_timeout = {int(waited)}")
                if busy:
                    return False
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if conn.execute("PRAGMA data_version").fetchone()[0] != version:
                        return False  # another connection committed since the checkpoint: its frames stay
                    if size > 0:
                        fd = os.open(wal, os.O_WRONLY)
                        try:
                            zeros = bytes(64 * 1024)
                            for offset in range(0, size, len(zeros)):
                                os.pwrite(fd, zeros[: min(len(zeros), size - offset)], offset)
                            os.fsync(fd)
                        finally:
                            os.close(fd)
                finally:
                    conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise map_sqlite_error(exc, path=self.path, device=self.device) from exc
            except OSError as exc:
                raise DeviceFailed(f"storage device {self.device}: could not scrub {wal.name}: {exc}") from exc
        if self.mirror is not None:
            try:
                return self.mirror.scrub_wal()
            except TillVaultError:
                return False
        return True

    def file_bytes(self) -> int:
        """Bytes on disk held by the database, its WAL and shared-memory file."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

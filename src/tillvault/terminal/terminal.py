"""The POS terminal: one data folder, its journal, its space manager and its keys.

``Terminal`` is the library's front door (``from tillvault import Terminal``). The sale
flow, settlement and store-and-forward live in their own modules and are reached through
methods here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tillvault.domain import iso8583 as iso
from tillvault.domain.emvqr import require_valid_qr
from tillvault.domain.limits import Limits
from tillvault.domain.merchant import Merchant
from tillvault.domain.money import currency_info
from tillvault.errors import ConfigError, InvalidInput, JournalCorrupt, SegmentCorrupt, StorageFull, TillVaultError
from tillvault.store.archive import DirectorySink
from tillvault.store.caches import CacheManager
from tillvault.store.forecast import forecast_runway
from tillvault.store.fsutil import is_within
from tillvault.store.journal import SETTLEMENT, Journal
from tillvault.store.keys import KeyRing, default_keyring_dir, refuse_beside_data
from tillvault.store.records import Records
from tillvault.store.retention import RetentionPolicy
from tillvault.store.space import SpaceManager, SpacePolicy, parse_size
from tillvault.store.tiers import Tiers
from tillvault.terminal.config import CONFIG_NAME, OfflinePolicy, TerminalConfig

JOURNAL_NAME = "journal.db"
#: The pressure ladder runs on its own at most this often (terminal clock) while pressure is raised.
LADDER_INTERVAL_MS = 10 * 60_000
#: A business day's first STAN: ten per second since midnight (see ``Terminal.first_stan``).
STANS_PER_SECOND = 10

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Local wall-clock time with its UTC offset."""
    return datetime.now().astimezone()


def day_first_stan(now: datetime) -> int:
    """The first STAN of a day that starts at ``now`` (local time): ten per second since midnight, plus one."""
    return min((now.hour * 3600 + now.minute * 60 + now.second) * STANS_PER_SECOND + 1, 999_999)


class Terminal:
    """One POS terminal's vault. Open with :meth:`open`, create with :meth:`init`."""

    def __init__(self, data_dir: Path, config: TerminalConfig, keyring: KeyRing, *, clock: Clock = system_clock):
        self.data_dir = Path(data_dir)
        self.config = config
        self.keyring = keyring
        self.clock = clock
        self._ms_of: tuple[datetime | None, int] = (None, 0)
        self.merchant = Merchant.from_dict(config.merchant)
        self.limits = Limits.from_dict(config.limits) if config.limits else Limits.for_currency(self.merchant.currency)
        self.offline = OfflinePolicy(**config.offline)
        from tillvault.terminal.devices import DeviceSet, choose_primary

        primary, root = choose_primary(self.data_dir, config.device_b)
        self.journal = Journal(root / JOURNAL_NAME, device=primary).open()
        self.records = Records(self.journal, config.terminal_id)
        self.records.first_stan = self.first_stan
        self.tiers = Tiers(root, self.journal, self.records, keyring, config.terminal_id)
        self.caches = CacheManager(self.data_dir, clock=lambda: self.clock().timestamp())
        self.retention = RetentionPolicy.from_dict(config.retention)
        self._client: Any = None
        self._lock_fd: int | None = None
        self._last_sample_ms = 0
        self._last_ladder_ms = 0
        #: A closed batch's old WAL frames still to be overwritten (a reader kept the scrub from completing).
        self._wal_scrub_due = False
        self._last_scrub_try_ms = 0
        #: The outbox back-off's jitter (a simulation seeds it: same seed, same retries).
        self.backoff_rng = random.Random()
        #: Wall time a sale may spend sending the backlog (None: messages counted only; see outbox).
        self.sale_drain_budget_s: float | None = 0.25
        #: Run the pressure ladder before refusing a sale for space (S5.3 auto-expand).
        self.auto_relieve = True
        self.space = SpaceManager(
            root,
            self.journal,
            SpacePolicy.from_dict(config.space),
            device=primary,
            open_batch_count=self.records.open_batch_count,
        )
        self.devices = DeviceSet(self, primary)
        from tillvault.terminal.operators import Operators

        #: Operators and roles (off until the first is added): who may sell, refund, void, settle.
        self.operators = Operators(self.journal, keyring, self.now_ms)
        # A reader mirrors only to a device that is in step; the lock holder re-copies one that is not.
        self.devices.attach(may_resilver=False)

    # -- lifecycle ----------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        data_dir: Path | str,
        *,
        terminal_id: str,
        merchant_qr: str,
        host: str,
        capacity: str | int | None = None,
        device_b: str | Path | None = None,
        keyring_dir: Path | str | None = None,
        merchant_id: str | None = None,
        licence_number: str = "",
        address: str = "",
        merchant_name: str | None = None,
        merchant_city: str | None = None,
        mcc: str | None = None,
        space: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
        offline: dict[str, Any] | None = None,
        archive: str | Path | None = None,
        retention: dict[str, Any] | None = None,
        host_tls_ca: str | Path | None = None,
        archive_tls_ca: str | Path | None = None,
        clock: Clock = system_clock,
    ) -> Terminal:
        """Create a terminal in ``data_dir``: configuration, key ring (elsewhere), journal, reserve.

        :raises QRCodeInvalid: the merchant QR does not parse or fails its CRC.
        :raises InvalidInput: a bad terminal id, host address or size.
        :raises ConfigError: the folder already holds a terminal, or the key ring would sit inside it.
        """
        data_dir = Path(data_dir)
        if (data_dir / CONFIG_NAME).exists():
            raise ConfigError(f"{data_dir} already holds a terminal; refusing to overwrite it")
        _clear_interrupted_init(data_dir, device_b)
        _check_address(host)
        archive_tls_ca = _check_archive(archive, archive_tls_ca)
        qr = require_valid_qr(merchant_qr)
        merchant = Merchant.from_qr(
            qr,
            terminal_id=terminal_id,
            merchant_id=merchant_id,
            address=address,
            licence_number=licence_number,
            name=merchant_name,
            city=merchant_city,
            mcc=mcc,
        )
        checked_limits = _limits_with_defaults(merchant.currency, limits or {})  # before anything is created
        policy = SpacePolicy.from_dict(space or {})
        if capacity is not None:
            try:
                policy.quota_bytes = parse_size(capacity)
            except ValueError as exc:
                raise InvalidInput(f"--capacity: {exc}") from None
        minimum = minimum_capacity(policy)
        if policy.quota_bytes is not None and policy.quota_bytes < minimum:
            raise InvalidInput(
                f"--capacity {policy.quota_bytes:,} B is below the {minimum:,} B a terminal needs (journal and WAL, "
                "settlement reserve, ballast and room for 100 sales)"
            )
        inside, around = (is_within(device_b, data_dir), is_within(data_dir, device_b)) if device_b else (False, False)
        if inside or around:
            place = "the data folder" if inside and around else "inside the data folder" if inside else "around it"
            raise InvalidInput(
                f"--device-b {device_b} is {place} ({data_dir}): device B is the second storage device, "
                "a folder on another card or disk"
            )
        # With a quota or without, the disks must physically hold the minimum (device B mirrors A).
        for where in (data_dir, *([Path(device_b)] if device_b else [])):
            _check_filesystem(where, minimum, policy.quota_bytes)
        term_uuid = str(uuid.uuid4())
        ring_path = Path(keyring_dir or default_keyring_dir()) / f"{term_uuid}.json"
        b_dir = Path(device_b) if device_b else None
        refuse_beside_data(ring_path, {"data folder": data_dir, "device B folder": b_dir})  # before anything is made
        if not data_dir.exists():
            # The journal holds masked numbers, tokens and encrypted fields: no one else reads it.
            data_dir.mkdir(parents=True, mode=0o700)
        data_dir.mkdir(parents=True, exist_ok=True)
        KeyRing.create(ring_path, data_dir=data_dir)
        config = TerminalConfig(
            terminal_id=merchant.terminal_id,
            terminal_uuid=term_uuid,
            merchant=merchant.to_dict(),
            host=host,
            keyring=str(ring_path.resolve()),
            space=policy.to_dict(),
            limits=checked_limits,
            offline={**OfflinePolicy.for_currency(merchant.currency).__dict__, **(offline or {})},
            # Absolute: the terminal is opened from any working folder (a relative device B or
            # archive would be "gone" when the runbook runs from elsewhere).
            device_b=str(Path(device_b).resolve()) if device_b else None,
            archive=_absolute_archive(archive),  # a folder, or the back office's http(s) URL
            retention=RetentionPolicy.from_dict(retention).to_dict(),
            host_tls_ca=str(Path(host_tls_ca).resolve()) if host_tls_ca else None,
            archive_tls_ca=str(Path(archive_tls_ca).resolve()) if archive_tls_ca else None,
        )
        if device_b:
            from tillvault.store.devices import write_marker

            if Path(device_b).resolve() == data_dir.resolve():
                raise InvalidInput("--device-b must be another folder (on another filesystem) than the data folder")
            if not Path(device_b).exists():
                Path(device_b).mkdir(parents=True, mode=0o700)  # the mirror holds what A holds: private too
            write_marker(Path(device_b), terminal_uuid=term_uuid, device="B")
        (data_dir / "terminal.lock").touch(mode=0o600)  # exists before any disk can fill
        from tillvault.store.devices import write_marker

        write_marker(data_dir, terminal_uuid=term_uuid, device="A")
        _mark_archive(archive)
        terminal = cls(data_dir, config, KeyRing.load(ring_path), clock=clock)
        terminal.lock()
        terminal.space.ensure_ballast()
        terminal.space.maintain()
        # Last: a folder holds a terminal once everything above is there. An init killed before
        # this leaves no terminal.json, and the next init clears what it left and starts again.
        config.save(data_dir)
        return terminal

    @classmethod
    def open(
        cls, data_dir: Path | str, *, clock: Clock = system_clock, exclusive: bool = False, wait_s: float = 30.0
    ) -> Terminal:
        """Open an existing terminal.

        With ``exclusive`` the terminal is locked for this process (sales and settlement
        run one at a time) and intents left pending by a process that died are resolved
        at once (see :meth:`recover`).

        :raises NotInitialized: no terminal there.
        :raises KeyRingError: its key ring cannot be found.
        :raises TillVaultError: another process holds the terminal for longer than ``wait_s``.
        """
        from tillvault.terminal.devices import missing_journal

        data_dir = Path(data_dir)
        config = TerminalConfig.load(data_dir)
        if why := missing_journal(data_dir, config.device_b):
            raise JournalCorrupt(why)
        terminal = cls(data_dir, config, KeyRing.load(Path(config.keyring)), clock=clock)
        if exclusive:
            try:
                terminal.lock(wait_s)
                terminal.recover()
            except BaseException:
                terminal.close()
                raise
        return terminal

    def lock(self, wait_s: float = 30.0) -> None:
        """Take the terminal's exclusive lock (released on close or when the process dies)."""
        if self._lock_fd is not None:
            return
        path = self.data_dir / "terminal.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            if exc.errno != errno.EROFS or not path.exists():
                raise
            fd = os.open(path, os.O_RDONLY)  # a read-only device A: lock anyway, device B may take over
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise TillVaultError(
                        f"another tillvault process is using the terminal in {self.data_dir}; try again"
                    ) from None
                time.sleep(0.05)
        self._lock_fd = fd
        # Another process may have failed over to the other device since this one opened: follow
        # it there. Then it may have sold or settled while this one waited or only read: catch up
        # first, so the mirror is checked against the real tip (every write checks again, so a
        # journal that cannot be read now is the write's to report, and failover still happens).
        changed = False
        with contextlib.suppress(TillVaultError):
            changed = self.devices.follow_primary()
        with contextlib.suppress(TillVaultError):
            changed = self.journal.refresh() or changed
        if changed:
            self.devices.release_mirror()  # it may lack the other process's writes: re-check it
        self.devices.attach(may_resilver=True)

    def _ensure_writer(self) -> None:
        """Money-moving work runs with the terminal's lock held (taken here if a reader calls it)."""
        if self._lock_fd is None:
            self.lock()
            self.recover()

    def close(self) -> None:
        """Close the host link and the journal; release the lock."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self.journal.close()
        if self.devices.b_journal is not None:
            self.devices.b_journal.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- time ---------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The terminal's clock (injectable: the simulator runs an accelerated one)."""
        return self.clock()

    def first_stan(self, at_ms: int | None = None) -> int:
        """A business day's first STAN (:func:`day_first_stan`) for its first message at ``at_ms``
        (ms since the epoch; default now), in the terminal clock's time zone: the instant that
        also gave the message its day, so a first sale just before midnight starts near 863,990.

        Not 1: a terminal that replaces another under the same id during the day (a swapped
        device, a spare set up on another day) must not send that day's STANs again, or the host
        declines every one as a duplicate (94). Counting from the time of the replacement's first
        message keeps it above whatever the other one reached, unless that one sent more than ten
        a second since its own first message of the day. (A replacement that already sent
        something earlier the same day carries on from its own counter.)
        """
        now = self.now()
        if at_ms is None:
            return day_first_stan(now)
        return day_first_stan(datetime.fromtimestamp(at_ms / 1000, tz=now.tzinfo))

    def now_ms(self) -> int:
        """The terminal's clock in ms since the epoch."""
        when = self.clock()
        if when is not self._ms_of[0]:  # a sale asks several times for the same instant
            self._ms_of = (when, int(when.timestamp() * 1000))
        return self._ms_of[1]

    def business_date(self) -> str:
        """Today's business date (local), ``YYYY-MM-DD``."""
        return self.clock().date().isoformat()

    # -- space --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def admit_sale(self) -> Iterator[int]:
        """Admission before authorization: hold a sale's whole-life bytes or raise ``StorageFull``.

        When the space is not there, the pressure ladder runs once first (clean caches, seal,
        offload and evict, release the ballast, settle: S5's auto-expand) and admission is
        tried again; only then is the sale refused.
        """
        with contextlib.ExitStack() as stack:
            try:
                held = stack.enter_context(self.space.reserve_for_sale())
            except StorageFull:
                if not self.auto_relieve:
                    raise
                with contextlib.suppress(TillVaultError):
                    self.relieve_pressure()
                held = stack.enter_context(self.space.reserve_for_sale())
            yield held

    def settlement_write(self, kind: str, body: dict[str, Any]) -> int:
        """Journal a settlement-class event (may use the reserve); returns its sequence number."""
        return self.journal.append(kind, body, klass=SETTLEMENT)

    def maintain(self) -> None:
        """Keep the physical reserve topped up and sample usage for the forecast (cheap when idle)."""
        if self._lock_fd is None:
            return  # readers change nothing
        with contextlib.suppress(StorageFull):
            self.space.maintain()
        self.devices.maintain()
        self.sample_usage()
        now = self.now_ms()
        if self._wal_scrub_due and now - self._last_scrub_try_ms >= 10_000:
            self._scrub_wal()
        if self.auto_relieve and now - self._last_ladder_ms >= LADDER_INTERVAL_MS:
            # Looked at once an interval, whatever it finds (admission runs the ladder itself when
            # a sale does not fit): a sale in between pays for no measurement.
            self._last_ladder_ms = now
            if self.space.status().pressure != "normal":
                with contextlib.suppress(TillVaultError):
                    self.relieve_pressure()

    def sample_usage(self, *, kind: str = "sample", min_interval_ms: int = 3_600_000) -> None:
        """Record (time, used bytes) for the runway forecast, at most once per ``min_interval_ms``."""
        now = self.now_ms()
        if now - self._last_sample_ms < min_interval_ms and kind == "sample":
            return
        last = self.journal.conn.execute("SELECT max(ts_ms) FROM usage_samples").fetchone()[0]
        if last is not None and now - int(last) < min_interval_ms and kind == "sample":
            self._last_sample_ms = int(last)
            return
        st = self.space.status()
        # The data's growth, not the ballast's: its release and rebuild are not the shop filling up.
        used = st.used_bytes - st.ballast_bytes
        with contextlib.suppress(TillVaultError):
            self.journal.execute_direct(
                "INSERT OR REPLACE INTO usage_samples (ts_ms, used_bytes, kind) VALUES (?, ?, ?)", (now, used, kind)
            )
        self._last_sample_ms = now

    def forecast(self) -> Any:
        """The runway forecast from usage samples (see :mod:`tillvault.store.forecast`)."""
        rows = self.journal.conn.execute("SELECT ts_ms, used_bytes FROM usage_samples ORDER BY ts_ms").fetchall()
        st = self.space.status()
        offset = self.clock().utcoffset()
        return forecast_runway(
            [(r[0] / 1000, r[1]) for r in rows],
            st.available_for_sales_bytes,
            now=self.now_ms() / 1000,
            utc_offset_s=int(offset.total_seconds()) if offset else 0,
        )

    def find_transaction(self, invoice: int) -> dict[str, Any]:
        """A transaction by invoice: the hot journal, a local sealed segment, or the archive's
        verified copy of an evicted one (read in place, nothing fetched onto the terminal).

        :raises TransactionNotFound: in none of them (or the archive is not reachable).
        """
        from tillvault.errors import TransactionNotFound

        try:
            return self.records.get(invoice)
        except TransactionNotFound:
            damaged: SegmentCorrupt | None = None
            try:
                found = self.tiers.find(invoice)
            except SegmentCorrupt as exc:
                found, damaged = None, exc
            if found is None:
                names = getattr(damaged, "segments", ())
                found = self.tiers.find_archived(invoice, self.archive_sink(), damaged=names)
            if found is None and damaged is not None:
                raise damaged from None
            if found is None:
                raise
            return found

    def day_total(self, business_date: str, *, card_token: str | None = None) -> tuple[int, int]:
        """(amount, count) of live sales on a business day, hot and sealed (for the daily limits)."""
        amount, count = self.records.day_total(business_date, card_token=card_token)
        for agg in self.tiers.aggregates():
            a, c = (
                agg["card_day"].get((business_date, card_token), (0, 0))
                if card_token
                else agg["day"].get(business_date, (0, 0))
            )
            amount, count = amount + a, count + c
        return amount, count

    def unreferenced_refunds(self, business_date: str, card_token: str) -> int:
        """Minor units refunded to a card on a business day without an original invoice, hot and
        sealed (a settlement in the middle of the day does not start the card's day again)."""
        return self.records.unreferenced_refunds(business_date, card_token) + sum(
            agg["unreferenced"].get((business_date, card_token), 0) for agg in self.tiers.aggregates()
        )

    def refunded_amount(self, original_invoice: int, *, batch: int | None = None) -> int:
        """Minor units refunded against ``original_invoice``, hot and sealed (with ``batch``, the
        original's batch: evicted segments from it on too, read from the archive)."""
        archived = (
            0 if batch is None else self.tiers.archived_refunds(original_invoice, self.archive_sink(), from_batch=batch)
        )
        return (
            archived
            + self.records.refunded_amount(original_invoice)
            + sum(agg["refunded"].get(original_invoice, 0) for agg in self.tiers.aggregates())
        )

    def find_by_idem_key(self, idem_key: str) -> dict[str, Any] | None:
        """The transaction a caller's idempotency key created, hot or sealed."""
        found = self.records.by_idem_key(idem_key)
        if found is not None:
            return found
        for agg in self.tiers.aggregates():
            if idem_key in agg["idem"]:
                return self.find_transaction(agg["idem"][idem_key])
        return None

    def transactions(
        self,
        *,
        batch: int | None = None,
        status: str | None = None,
        business_date: str | None = None,
        limit: int = 1000,
        archived: bool = False,
        unread: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Transactions newest first: the hot journal, then local sealed segments, then (with
        ``archived``) evicted ones read from the archive's verified copies, nothing written here.

        ``unread`` (a list) receives the names of evicted segments that could not be read now.
        """
        import json as _json

        rows = self.records.list(batch=batch, status=status, business_date=business_date, limit=limit)
        seen = {r["invoice"] for r in rows}
        span = None
        if business_date is not None:
            # A business day is local: whatever the time zone (UTC-12 to UTC+14), its sales were
            # made between 14 h before and 36 h after that date's midnight in UTC.
            from datetime import UTC, date, datetime, time, timedelta

            midnight = datetime.combine(date.fromisoformat(business_date), time(0), tzinfo=UTC)
            span = (
                int((midnight - timedelta(hours=15)).timestamp() * 1000),
                int((midnight + timedelta(hours=37)).timestamp() * 1000),
            )
        sealed, missing = self.tiers.sealed_records(
            self.archive_sink() if archived else None, batch=batch, archived=archived, created_between=span
        )
        if len(rows) < limit:  # a segment is read only while the list still needs it
            for rec in sealed:
                if rec["invoice"] in seen or (status is not None and rec["status"] != status):
                    continue
                if business_date is not None and rec["business_date"] != business_date:
                    continue
                if isinstance(rec.get("extra"), str):
                    rec = {**rec, "extra": _json.loads(rec["extra"])}
                seen.add(rec["invoice"])
                rows.append(rec)
                if len(rows) >= limit:
                    break
        if unread is not None:
            unread.extend(missing)
        rows.sort(key=lambda r: r["invoice"], reverse=True)
        return rows[:limit]

    def set_archive(self, archive: str | Path | None, *, ca: str | Path | None = None) -> dict[str, Any]:
        """Give the terminal an archive after ``init`` (or another one, or none with ``None``): a
        folder on a NAS or USB disk, or the back office's https URL, checked as ``init`` checks it.
        Sealed batches leave the device for it at the next ``cleanup``; nothing is moved now.

        :raises InvalidInput: a folder that does not exist, a plain-http URL off this machine.
        :raises ConfigError: an unreadable CA file.
        """
        self._ensure_writer()
        target = _absolute_archive(archive)
        self.config.archive_tls_ca = _check_archive(target, ca) if target else None
        _mark_archive(target)
        self.config.archive = target
        self.config.save(self.data_dir)
        return {"ok": True, "archive": target, "archive_tls_ca": self.config.archive_tls_ca}

    def archive_sink(self) -> Any:
        """The configured archive sink, if any: a folder (NAS, USB disk) or the back office (a URL)."""
        archive = self.config.archive
        if not archive:
            return None
        if _is_url(archive):
            from tillvault.terminal.fleet import BackofficeSink

            return BackofficeSink(
                archive,
                self.config.terminal_id,
                os.environ.get("TILLVAULT_BACKOFFICE_TOKEN"),
                ca=self.config.archive_tls_ca,
            )
        return DirectorySink(archive, terminal_dev=os.stat(self.data_dir).st_dev)

    def purge(self) -> dict[str, int]:
        """Apply retention: customers, delivered outbox messages, old samples, aged caches, old segments."""
        now = self.now_ms()
        r = self.retention
        out = {"customers": 0, "outbox": 0, "samples": 0, "segments_evicted": 0}
        direct = self.journal.execute_direct
        out["customers"] = direct("DELETE FROM customers WHERE last_ms < ?", (r.cutoff_ms("customers_inactive", now),))
        out["outbox"] = direct(
            "DELETE FROM outbox WHERE status = 'delivered' AND created_ms < ?", (r.cutoff_ms("audit", now),)
        )
        out["samples"] = direct("DELETE FROM usage_samples WHERE ts_ms < ?", (r.cutoff_ms("audit", now),))
        direct("DELETE FROM day_sales WHERE count <= 0")  # days whose sales all left the hot tier
        sink = self.archive_sink()
        if sink is not None:
            with contextlib.suppress(TillVaultError):
                out["segments_evicted"] = self.tiers.evict(
                    sink, keep_days=r.transactions_local_days, now_ms=now
                ).evicted
        out["total"] = sum(out.values())
        if out["total"]:
            self.sample_usage(kind="reset", min_interval_ms=0)
        return out

    def cleanup(self) -> Any:
        """Run the ladder's safe steps now (caches, seal, purge, offload, evict); returns the report."""
        from tillvault.terminal.pressure import run_ladder

        self._ensure_writer()
        return run_ladder(self, force_level="high")

    def relieve_pressure(self) -> Any:
        """Run the pressure ladder for the current level (what the terminal does on its own)."""
        from tillvault.terminal.pressure import run_ladder

        self._ensure_writer()
        return run_ladder(self)

    # -- the sale flow ----------------------------------------------------------------------
    def host_client(self) -> Any:
        """The ISO 8583 link to the acquirer host (created on first use)."""
        if self._client is None:
            self._client = self.new_host_client(
                timeout=self.config.host_timeout_s, connect_timeout=min(3.0, self.config.host_timeout_s)
            )
        return self._client

    def new_host_client(self, *, timeout: float, connect_timeout: float) -> Any:
        """A fresh link to the configured host, over TLS when the terminal is set up for it."""
        from tillvault.host.client import HostClient

        context = None
        if self.config.host_tls_ca:
            import ssl

            context = ssl.create_default_context(cafile=self.config.host_tls_ca)
        return HostClient(self.config.host, timeout=timeout, connect_timeout=connect_timeout, ssl_context=context)

    def set_host(self, address: str, *, ca: str | Path | None = None) -> dict[str, Any]:
        """Point the terminal at another acquirer host for good (a typo at ``init``, a new address):
        checked as ``init`` checks it, saved, and used from the next exchange. ``ca``: the host's CA
        (PEM) when it speaks TLS with a private CA; without it, the link is TLS only if it was.

        :raises InvalidInput: not ``host:port``. :raises ConfigError: an unreadable CA file.
        """
        self._ensure_writer()
        _check_address(address)
        checked = None
        if ca:
            from tillvault.terminal.fleet import check_ca_file

            checked = check_ca_file(ca, "--ca")
        self.use_host(address)
        if checked is not None:
            self.config.host_tls_ca = checked
        self.config.save(self.data_dir)
        return {"ok": True, "host": address, "host_tls_ca": self.config.host_tls_ca}

    def use_host(self, address: str) -> None:
        """Talk to the host at ``address`` from now on (closing the current link)."""
        _check_address(address)
        if self._client is not None:
            self._client.close()
            self._client = None
        self.config.host = address

    @property
    def updates(self) -> Any:
        """Software updates: signed, incremental, admitted before a byte is written (S12)."""
        from tillvault.terminal.updates import Updates

        return Updates(self)

    def _refusal(
        self, action: str, operator_id: str | None, pin: str | None, *, idem_key: str | None, **result: Any
    ) -> Any:
        """A refused result when operator roles are on and this operator may not do ``action``
        (checked before anything is written or sent), else None."""
        from tillvault.errors import PermissionDenied
        from tillvault.terminal.sale import TxResult

        if not self.operators.enabled():
            return None  # roles off: anyone may (one indexed read a sale)
        if idem_key is not None and self.find_by_idem_key(idem_key) is not None:
            return None  # a retry of a request already made: its first result is returned, whoever asks
        try:
            self.operators.check(action, operator_id, pin)
        except PermissionDenied as exc:
            return TxResult(status="refused", reason=str(exc), currency=self.merchant.currency, kind=action, **result)
        return None

    def sale(self, amount: int, pan: str, expiry: str | None, *, pin: str | None = None, **kwargs: Any) -> Any:
        """Run a sale of ``amount`` minor units (see :class:`tillvault.terminal.sale.SaleFlow`).

        With operator roles on, ``operator_id`` and ``pin`` must name a cashier or above. A full
        batch is settled first (forced settlement); if that cannot happen the sale is refused with
        the reason, before anything is written or sent. Records are never dropped.
        """
        from tillvault.errors import SettlementError
        from tillvault.terminal.sale import SaleFlow, TxResult

        self._ensure_writer()
        if refused := self._refusal(
            "sale", kwargs.get("operator_id"), pin, amount=amount, idem_key=kwargs.get("idem_key")
        ):
            return refused
        self._drain_due()
        if self.batch_full():
            try:
                self.settle()
            except SettlementError as exc:
                return TxResult(
                    status="refused",
                    amount=amount,
                    currency=self.merchant.currency,
                    reason=(
                        f"the batch is full ({self.config.batch_max_count} transactions) and must be settled first: "
                        f"{exc}"
                    ),
                )
        return SaleFlow(self).sale(amount=amount, pan=pan, expiry=expiry, **kwargs)

    def refund(self, amount: int, pan: str, expiry: str | None, *, pin: str | None = None, **kwargs: Any) -> Any:
        """Refund ``amount`` minor units to the card (with operator roles on: a supervisor or above)."""
        from tillvault.terminal.sale import SaleFlow

        self._ensure_writer()
        if refused := self._refusal(
            "refund", kwargs.get("operator_id"), pin, amount=amount, idem_key=kwargs.get("idem_key")
        ):
            return refused
        self._drain_due()
        return SaleFlow(self).refund(amount=amount, pan=pan, expiry=expiry, **kwargs)

    def void(self, invoice: int, *, pin: str | None = None, **kwargs: Any) -> Any:
        """Void an approved sale of the open batch (with operator roles on: a supervisor or above)."""
        from tillvault.terminal.sale import SaleFlow

        self._ensure_writer()
        if refused := self._refusal(
            "void", kwargs.get("operator_id"), pin, invoice=invoice, idem_key=kwargs.get("idem_key")
        ):
            return refused
        self._drain_due()
        return SaleFlow(self).void(invoice, **kwargs)

    def settle(self) -> Any:
        """Close the batch with the host (see :mod:`tillvault.terminal.settle`); returns the report.

        :raises SettlementError: the host cannot be reached; nothing is lost, retry later.
        """
        from tillvault.terminal.settle import settle

        self._ensure_writer()
        report = settle(self)
        # Seal what closed (best effort: if it cannot happen now, the pressure ladder retries).
        with contextlib.suppress(TillVaultError):
            self.tiers.seal_closed()
        if report.closed_ms is not None and report.batch not in {s["batch"] for s in self.tiers.catalogue()}:
            # Not sealed yet: the encrypted card data of the closed batch goes now anyway.
            from tillvault.terminal.settle import strip_card_data

            with contextlib.suppress(TillVaultError):
                strip_card_data(self, report.batch)
        if report.closed_ms is not None:
            # The closed batch's encrypted card numbers are gone from the tables; old WAL frames
            # still hold page images with them until overwritten: overwrite them now (or, if a
            # reader is in the way, at a later sale's housekeeping).
            self._wal_scrub_due = True
            self._scrub_wal()
        self.space.forget_sizes()
        # The level after the close is what the runway forecast compares day to day.
        with contextlib.suppress(TillVaultError, sqlite3.Error):
            self.sample_usage(kind="close", min_interval_ms=0)
        return report

    def _scrub_wal(self) -> None:
        """Overwrite the WAL's old frames if a closed batch left some (see :meth:`Journal.scrub_wal`)."""
        self._last_scrub_try_ms = self.now_ms()
        with contextlib.suppress(TillVaultError):
            self._wal_scrub_due = not self.journal.scrub_wal()

    def batch_full(self) -> bool:
        """True when the open batch has reached ``batch_max_count`` and must be settled."""
        return self.records.open_batch_count() >= self.config.batch_max_count

    def drain_outbox(self, *, force: bool = False, limit: int = 10_000, budget_s: float | None = None) -> Any:
        """Deliver queued advices and reversals to the host (in order, with back-off); at most
        ``limit`` messages, and none started after ``budget_s`` seconds of wall time."""
        from tillvault.terminal.outbox import drain_outbox

        self._ensure_writer()
        return drain_outbox(self, force=force, rng=self.backoff_rng, limit=limit, budget_s=budget_s)

    def _drain_due(self) -> None:
        # The drain goes in order and stops at the first message that is not due, so the head of
        # the queue decides (a queue of thousands after an outage is not read at every sale).
        due = self.records.outbox_head_due_ms()
        if due is not None and due <= self.now_ms():
            from tillvault.terminal.outbox import SALE_DRAIN_MESSAGES

            with contextlib.suppress(TillVaultError):  # a slice: the customer at the till comes first
                self.drain_outbox(limit=SALE_DRAIN_MESSAGES, budget_s=self.sale_drain_budget_s)

    def recover(self, *, older_than_ms: int = 0) -> list[int]:
        """Resolve intents left pending by a crash: mark them not completed and queue a reversal.

        The outcome of such a sale is unknown (the request may have reached the host), so it
        is reversed, never silently dropped. Returns the invoices recovered. Only call with
        the terminal locked (or with ``older_than_ms`` beyond any live sale's time-out).
        """
        from tillvault.terminal.sale import SaleFlow

        flow = SaleFlow(self)
        recovered = []
        cutoff = self.now_ms() - older_than_ms
        for tx in self.records.pending():
            if tx["created_ms"] > cutoff:
                continue
            original = self._rebuild_request(tx)
            reversal = iso.reversal_request(original, when=self.now())
            self.records.record_outcome(
                tx["invoice"],
                status="not_completed",
                ts_ms=self.now_ms(),
                reason="interrupted before the host's answer was recorded; a reversal is queued",
                outbox=[flow._outbox_entry("reversal", tx["invoice"], reversal)],
                extra={k: v for k, v in (tx["extra"] or {}).items() if k != "pan_enc"},
                klass="settlement",
            )
            recovered.append(tx["invoice"])
        return recovered

    def _rebuild_request(self, tx: dict[str, Any]) -> dict[str, str]:
        """The 0200 a pending intent would have sent, without the PAN (enough to reverse it)."""
        when = datetime.fromisoformat((tx["extra"] or {}).get("when") or self.now().isoformat())
        proc = {"sale": "000000", "refund": "200000", "void": "020000"}.get(tx["kind"], "000000")
        return {
            "t": "0200",
            "3": proc,
            "4": f"{tx['amount']:012d}",
            "7": when.astimezone(UTC).strftime("%m%d%H%M%S"),
            "11": f"{tx['stan']:06d}",
            "12": when.strftime("%H%M%S"),
            "13": when.strftime("%m%d"),
            "41": iso.terminal_id_field(self.config.terminal_id),
            "42": self.merchant.merchant_id.ljust(15),
            "49": currency_info(tx["currency"]).numeric,
            "60": f"{tx['batch'] % 1_000_000:06d}",
            "62": f"{tx['invoice'] % 1_000_000:06d}",
        }

    # -- reports ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Capacity, use, reserve, pressure, runway and counts (the ``tillvault status --json`` contract)."""
        from tillvault.terminal.pressure import level_with_runway, messages

        st = self.space.status(exact=True)
        counts = self.records.count_by_status()
        fc = self.forecast()
        out = {
            "terminal_id": self.config.terminal_id,
            "merchant": self.merchant.name,
            "capacity_bytes": st.capacity_bytes,
            "used_bytes": st.used_bytes,
            "free_bytes": st.free_bytes,
            "reserve_bytes": st.reserve_bytes,
            "available_for_sales_bytes": st.available_for_sales_bytes,
            "sales_possible": st.sales_possible,
            "journal_free_page_bytes": st.journal_free_page_bytes,
            "ballast_bytes": st.ballast_bytes,
            "pressure": level_with_runway(st.pressure, fc.runway_days),
            "space_pressure": st.pressure,
            "runway_days": None if fc.runway_days is None else round(fc.runway_days, 1),
            "runway_days_low": None if fc.runway_days_low is None else round(fc.runway_days_low, 1),
            "runway_days_high": None if fc.runway_days_high is None else round(fc.runway_days_high, 1),
            "bytes_per_day": None if fc.bytes_per_day is None else round(fc.bytes_per_day),
            "forecast": fc.reason or fc.method,
            "open_batch": self.records.current_batch(),
            "open_batch_count": self.records.open_batch_count(),
            "hot_transactions": sum(counts.values()),
            "counts": counts,
            "pending_intents": counts.get("pending", 0),
            "outbox_pending": self.records.outbox_count(),
            **self.tiers.counts(),
            "caches": self.caches.usage(),
            "archive": self.config.archive,
            "devices": self.devices.status(),
            "alerts": self.devices.alerts(),
        }
        # Every transaction the terminal holds: the sealed segments' (local or not) and the hot rows not
        # sealed yet (a sealed batch's rows linger when the purge after sealing could not run).
        unsealed = self.journal.conn.execute(
            "SELECT count(*) FROM transactions WHERE batch NOT IN (SELECT batch FROM segments)"
        ).fetchone()[0]
        out["transactions"] = int(unsealed) + out["sealed_transactions"]
        out["message"], out["message_zh"] = messages(out["pressure"], "A", out)
        return out

    def scrub(self) -> dict[str, Any]:
        """Verify every record, checksum, the hash chain, every segment on both devices and the
        archive's copies, and repair a bad copy from a good one (``{"ok", "checked", "problems",
        "repaired", "archive"}``)."""
        return self.devices.scrub(repair=self._lock_fd is not None)


def _limits_with_defaults(currency: str, given: dict[str, Any]) -> dict[str, Any]:
    """The limits given and the currency's defaults for the rest, a default moved to fit the given
    ones (a per-transaction limit above the default per-card day raises that day; a per-card day
    below the default per-transaction limit lowers it).

    :raises InvalidInput: the limits given contradict each other.
    """
    out = {**Limits.for_currency(currency).to_dict(), **given}
    order = ("max_per_transaction", "max_per_card_per_day", "max_per_terminal_per_day")
    for _ in order:  # until settled (a moved default may move the next)
        for smaller, larger in itertools.pairwise(order):
            if out[smaller] <= out[larger]:
                continue
            if smaller in given and larger in given:
                from tillvault.domain.money import format_amount

                def shown(name: str) -> str:
                    return f"--{name.replace('_', '-')} ({format_amount(out[name], currency)} {currency})"

                raise InvalidInput(f"{shown(larger)} is below {shown(smaller)}: a day must hold one transaction")
            if larger in given:
                out[smaller] = out[larger]
            else:
                out[larger] = out[smaller]
    Limits.from_dict(out)  # every value checked
    return out


#: Bytes the journal, its pre-grown WAL and shared memory take on a fresh terminal (measured).
JOURNAL_BASE_BYTES = 800 * 1024


def _check_filesystem(folder: Path, minimum: int, quota: int | None) -> None:
    """Refuse a folder whose filesystem has less free than ``minimum``, or is smaller in all than
    ``quota`` (a store promised more than its disk holds).

    :raises InvalidInput: naming the folder, what it has and what is needed.
    """
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        fs = os.statvfs(probe)
    except OSError:
        return  # unreadable here: the first write will say why
    free, total = fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize
    if free < minimum:
        raise InvalidInput(
            f"the filesystem of {folder} has {free:,} B free, below the {minimum:,} B a terminal needs (journal "
            "and WAL, settlement reserve, ballast and room for 100 sales): free space there or choose a larger disk"
        )
    if quota is not None and quota > total:
        raise InvalidInput(
            f"--capacity {quota:,} B is more than the whole filesystem of {folder} holds ({total:,} B): "
            "give at most what the disk can hold"
        )


def minimum_capacity(policy: SpacePolicy) -> int:
    """The smallest store a terminal can work in: journal, reserve, headroom, ballast, 100 sales."""
    return (
        JOURNAL_BASE_BYTES
        + policy.reserve_base_bytes
        + policy.headroom_bytes
        + policy.ballast_bytes
        + 100 * policy.sale_life_bytes
    )


def _absolute_archive(archive: str | Path | None) -> str | None:
    """The archive as the configuration keeps it: a URL as given, a folder made absolute."""
    if not archive:
        return None
    return str(archive) if _is_url(archive) else str(Path(archive).resolve())


def _is_url(archive: str | Path | None) -> bool:
    """True for the back office's http(s) URL, False for a folder (or none)."""
    return bool(archive) and str(archive).startswith(("http://", "https://"))


def _check_archive(archive: str | Path | None, ca: str | Path | None) -> str | None:
    """Check an archive as given to ``init`` or ``archive set``; returns the checked CA file.

    :raises InvalidInput: a folder that does not exist, a plain-http URL off this machine.
    """
    if _is_url(archive):
        from tillvault.terminal.fleet import check_backoffice_url

        check_backoffice_url(str(archive))  # never the fleet token in clear across the network
    checked = None
    if ca:
        from tillvault.terminal.fleet import check_ca_file

        checked = check_ca_file(ca, "--archive-ca")
    if archive and not _is_url(archive) and not Path(archive).is_dir():
        raise InvalidInput(
            f"archive folder {archive} does not exist: mount the NAS or USB disk there (or create the "
            "folder on it) first, or give the back office's http(s) URL"
        )
    return checked


def _mark_archive(archive: str | Path | None) -> None:
    """Mark an archive folder now, so an empty mount point left by an unplugged disk is never taken for it."""
    if archive and not _is_url(archive) and Path(archive).is_dir():
        with contextlib.suppress(OSError, TillVaultError):
            DirectorySink(archive).mark()


#: What an init writes in the data folder (and on device B) before its terminal.json.
_INIT_FILES = ("journal.db", "journal.db-wal", "journal.db-shm", "ballast.bin", "terminal.lock")


def _clear_interrupted_init(data_dir: Path, device_b: str | Path | None) -> None:
    """Remove what an interrupted init left (no terminal.json: no sale can have been made), so
    init can start again; refuse if the journal holds transactions (an interrupted restore?).

    :raises ConfigError: the folder holds a journal with transactions but no terminal.json.
    """
    from tillvault.store.devices import MARKER

    for folder in (data_dir, Path(device_b) if device_b else None):
        if folder is None:
            continue
        sealed = sorted(p.name for p in (folder / "segments").glob("*.tvs")) if (folder / "segments").is_dir() else []
        if not (folder / "journal.db").exists() and not sealed:
            continue
        used: list[str] = []
        if (folder / "journal.db").exists():
            try:
                with contextlib.closing(sqlite3.connect(f"file:{folder / 'journal.db'}?mode=ro", uri=True)) as conn:
                    for what, sql in (
                        ("transactions", "SELECT count(*) FROM transactions"),
                        ("sealed batches", "SELECT count(*) FROM segments"),
                        ("invoices issued", "SELECT coalesce(max(value), 0) FROM counters WHERE name = 'invoice'"),
                    ):
                        with contextlib.suppress(sqlite3.Error):  # no table yet: the init died before it
                            n = int(conn.execute(sql).fetchone()[0])
                            if n:
                                used.append(f"{n} {what}")
            except sqlite3.Error:
                pass  # not even a database: what an init killed at its first write leaves
        if sealed:
            used.append(f"{len(sealed)} sealed segment file(s)")
        if used:
            # A journal that ever sold (its sales sealed and purged, its invoices counted) is never
            # taken for an interrupted init: a new journal would reuse invoice numbers and seal over
            # the old segments.
            raise ConfigError(
                f"{folder} holds a terminal's data ({', '.join(used)}) but no terminal.json (deleted, or an "
                "interrupted restore?): put its terminal.json back or restore from a backup; to start afresh, "
                "move the folder aside first"
            )
        for name in (*_INIT_FILES, MARKER):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"host address {address!r} must be HOST:PORT, e.g. 127.0.0.1:8583")
    if host.replace(".", "").isdigit():
        import ipaddress

        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise InvalidInput(
                f"host address {address!r}: {host} is not an IPv4 address (four numbers 0-255)"
            ) from None

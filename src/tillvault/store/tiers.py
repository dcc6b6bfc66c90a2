"""Tiers: hot rows sealed into warm segments, offloaded to the cold archive, evicted, fetched back.

- **seal** a closed batch: its transaction records go into one immutable segment
  (compressed, encrypted; :mod:`tillvault.store.segments`), written atomically and verified
  by reading it back; only then is it catalogued and the chain anchor moved past its events,
  in one journal write. The hot rows and events are then deleted in small writes (the
  bounded WAL suffices on a full disk); a crash in between leaves rows that the next purge
  deletes, never a gap.
- **offload** a sealed segment to an archive sink; the catalogue records the acknowledgement.
- **evict** the local copy only when acknowledged *and* older than local retention, after
  checking the sink still holds a verified copy (invariant 5).
- **fetch** an evicted segment back on demand (verified against its digest).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tillvault.errors import (
    DeviceFailed,
    InvalidInput,
    JournalCorrupt,
    KeyRingError,
    SegmentCorrupt,
    StorageError,
    StorageFull,
)
from tillvault.store.archive import ArchiveSink, ArchiveUnavailable, file_sha256
from tillvault.store.encoding import row_intact
from tillvault.store.fsutil import remove_files
from tillvault.store.journal import SETTLEMENT, Journal, WriteContext
from tillvault.store.keys import KeyRing
from tillvault.store.records import TX_COLUMNS, Records
from tillvault.store.segments import find, read_segment, seal_segment, segment_info, verify_segment

SEGMENT_DIR = "segments"
#: ``extra`` keys that only matter while a batch is open.
SEAL_DROPS = ("pan_enc", "when")
DELETE_CHUNK = 200
DAY_MS = 86_400_000


@dataclass
class TierReport:
    """What a tier operation did."""

    sealed: int = 0
    sealed_records: int = 0
    offloaded: int = 0
    evicted: int = 0
    freed_bytes: int = 0
    errors: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "sealed": self.sealed,
            "sealed_records": self.sealed_records,
            "offloaded": self.offloaded,
            "evicted": self.evicted,
            "freed_bytes": self.freed_bytes,
            "errors": self.errors or [],
        }


class Tiers:
    """Warm and cold tiers of one terminal."""

    def __init__(self, root: Path, journal: Journal, records: Records, keyring: KeyRing, terminal_id: str) -> None:
        self.root = Path(root)
        self.folder = self.root / SEGMENT_DIR
        self.journal = journal
        self.records = records
        self.keyring = keyring
        self.terminal_id = terminal_id
        #: Segments folder on device B while B is healthy (copies are kept on both).
        self.mirror_folder: Path | None = None
        #: Called with a reason when copying to device B fails (the device set degrades B).
        self.on_mirror_failure: Any = None
        self._aggregates: dict[str, dict[str, Any]] = {}
        self._by_invoice: dict[str, dict[int, dict[str, Any]]] = {}
        #: (name, digest) -> the segment's invoice range, read from its header once.
        self._invoice_spans: dict[tuple[str, str], tuple[int | None, int | None]] = {}
        #: The catalogue as last read, valid while no write changed it (see :meth:`catalogue`).
        self._catalogue: tuple[Any, int, list[dict[str, Any]]] | None = None
        #: The aggregates of every local segment for one catalogue list (see :meth:`aggregates`).
        self._aggregates_list: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None

    def remove_leftovers(self) -> int:
        """Remove what a killed process left in the segment folders (caller holds the terminal's
        lock): a half-written ``.seg-*.tmp``, a half-fetched ``.fetch-*``, and the local copy of a
        segment the catalogue says was evicted (killed between the two steps). Returns bytes freed."""
        evicted = {seg["name"] for seg in self._catalogue_rows() if not seg["local"]}

        def left(name: str) -> bool:
            return (name.startswith(".seg-") and name.endswith(".tmp")) or name.startswith(".fetch-") or name in evicted

        folders = [f for f in (self.folder, self.mirror_folder) if f is not None and f.is_dir()]
        return remove_files(p for f in folders for p in f.iterdir() if left(p.name))

    def segment_path(self, name: str) -> Path:
        """Where a segment's local copy lives (device A, else device B)."""
        path = self.folder / name
        if not path.exists() and self.mirror_folder is not None and (self.mirror_folder / name).exists():
            return self.mirror_folder / name
        return path

    def copies(self, name: str) -> list[tuple[str, Path]]:
        """(device, path) of every place a copy may be."""
        out = [("A", self.folder / name)]
        if self.mirror_folder is not None:
            out.append(("B", self.mirror_folder / name))
        return out

    def mirror_segment(self, name: str, digest: str) -> bool:
        """Copy a segment to device B (atomic, verified); False (and B degraded) if B cannot take it."""
        if self.mirror_folder is None:
            return False
        from tillvault.store.archive import DirectorySink

        try:
            self.mirror_folder.mkdir(parents=True, exist_ok=True)
            DirectorySink(self.mirror_folder).put(self.folder / name, digest)
        except (ArchiveUnavailable, OSError) as exc:
            if self.on_mirror_failure is not None:
                self.on_mirror_failure(f"copying segment {name} to device B failed: {exc}")
            return False
        return True

    def mirror_all(self) -> int:
        """Copy to device B every local segment it lacks (after B returns); segments copied."""
        if self.mirror_folder is None:
            return 0
        n = 0
        for seg in self.catalogue():
            if seg["local"] and (self.folder / seg["name"]).exists():
                target = self.mirror_folder / seg["name"]
                if not (target.exists() and file_sha256(target) == seg["digest"]):
                    if not self.mirror_segment(seg["name"], seg["digest"]):
                        break
                    n += 1
        return n

    # -- catalogue ----------------------------------------------------------------------------
    def catalogue(self) -> list[dict[str, Any]]:
        """Every sealed segment, oldest first (copies: callers may change them).

        Read once and kept while nothing changed it: this object's own writes drop it, and
        ``PRAGMA data_version`` tells when another connection (another process) committed.
        Limits, refunds and retries look at it on every sale.
        """
        return [dict(r) for r in self._catalogue_rows()]

    def _catalogue_rows(self) -> list[dict[str, Any]]:
        """The cached catalogue itself (not copies: read-only for the caller); a new list after a change."""
        conn = self.journal.conn
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        cached = self._catalogue
        if cached is None or cached[0] is not conn or cached[1] != version:
            rows = [dict(r) for r in conn.execute("SELECT * FROM segments ORDER BY batch")]
            self._catalogue = cached = (conn, version, rows)
        return cached[2]

    def forget_catalogue(self) -> None:
        """Read the catalogue again next time (after a change made outside this object)."""
        self._catalogue = None

    def counts(self) -> dict[str, int]:
        """Sealed, offloaded (acknowledged) and evicted segment counts, and sealed records."""
        row = self.journal.conn.execute(
            "SELECT count(*), coalesce(sum(acked_ms IS NOT NULL), 0), coalesce(sum(local = 0), 0), "
            "coalesce(sum(records), 0), coalesce(sum(CASE WHEN local = 1 THEN bytes ELSE 0 END), 0) FROM segments"
        ).fetchone()
        return {
            "sealed_segments": int(row[0]),
            "offloaded_segments": int(row[1]),
            "evicted_segments": int(row[2]),
            "sealed_transactions": int(row[3]),
            "warm_bytes": int(row[4]),
        }

    # -- sealing ------------------------------------------------------------------------------
    def sealable_batches(self) -> list[int]:
        """Closed batches not yet sealed, oldest first."""
        rows = self.journal.conn.execute(
            "SELECT batch FROM batches WHERE status = 'closed' AND batch NOT IN (SELECT batch FROM segments) "
            "ORDER BY closed_ms, batch"
        ).fetchall()
        return [int(r[0]) for r in rows]

    def seal_closed(self, *, limit: int = 100) -> TierReport:
        """Seal every closed batch (oldest first); stops at the first that cannot be sealed."""
        report = TierReport(errors=[])
        for batch in self.sealable_batches()[:limit]:
            try:
                n = self.seal_batch(batch)
            except (StorageError, KeyRingError) as exc:
                report.errors.append(f"batch {batch}: {exc}")  # type: ignore[union-attr]
                break
            report.sealed += 1
            report.sealed_records += n
        self.purge_sealed_rows()
        return report

    def seal_batch(self, batch: int) -> int:
        """Seal one closed batch; returns the number of records sealed.

        :raises InvalidInput: the batch is not closed, or already sealed.
        :raises StorageFull: no room for the segment file (nothing changed).
        """
        conn = self.journal.conn
        row = conn.execute("SELECT status FROM batches WHERE batch = ?", (batch,)).fetchone()
        if row is None or row[0] != "closed":
            raise InvalidInput(f"batch {batch} is not closed; only a closed batch can be sealed")
        if conn.execute("SELECT 1 FROM segments WHERE batch = ?", (batch,)).fetchone():
            raise InvalidInput(f"batch {batch} is already sealed")
        rows = conn.execute("SELECT * FROM transactions WHERE batch = ? ORDER BY invoice", (batch,)).fetchall()
        bad = [int(r["invoice"]) for r in rows if not row_intact(r)]
        if bad:  # sealed, a changed row would pass every later check as if it were what was written
            raise JournalCorrupt(
                f"batch {batch:06d} is not sealed: transaction(s) {', '.join(f'{i:06d}' for i in bad[:5])} changed "
                "on disk since they were written (checksum mismatch); run tillvault scrub"
            )
        close = conn.execute(
            "SELECT seq, chain FROM events WHERE kind = 'batch_closed' "
            "AND json_extract(CAST(body AS TEXT), '$.batch') = ? ORDER BY seq DESC LIMIT 1",
            (batch,),
        ).fetchone()
        anchor = conn.execute("SELECT seq, chain FROM chain_anchor WHERE id = 1").fetchone()
        records = [{k: r[k] for k in TX_COLUMNS} for r in rows]  # the rows just checked, read once
        for r in records:  # the card is gone from sealed data: no encrypted PAN either
            if r["extra"]:
                from tillvault.store.encoding import canonical, decode

                # Working data of an open batch leaves with it: the encrypted card (no void is
                # possible any more) and the request's local time (created_ms keeps the instant).
                extra = {k: v for k, v in decode(r["extra"]).items() if k not in SEAL_DROPS}
                r["extra"] = canonical(extra).decode() if extra else None
        # The sealed stretch of the chain ends at the batch's close, or just before the first event
        # of a later batch (sales went on while this close was interrupted): those stay hot.
        later = conn.execute(
            "SELECT min(seq) FROM events WHERE kind = 'intent' AND seq > ? "
            "AND json_extract(CAST(body AS TEXT), '$.batch') > ?",
            (int(anchor[0]), batch),
        ).fetchone()[0]
        end = int(close[0]) if close is not None else int(anchor[0])
        if later is not None:
            end = min(end, int(later) - 1)
        if end <= int(anchor[0]):
            last_seq, chain_to = int(anchor[0]), bytes(anchor[1])
        else:
            last_seq = end
            chain_to = bytes(conn.execute("SELECT chain FROM events WHERE seq = ?", (end,)).fetchone()[0])
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"seg-{self.terminal_id}-{batch:06d}.tvs"
        path = self.segment_path(name)
        info = seal_segment(
            records,
            path,
            self.keyring,
            batch=batch,
            terminal_id=self.terminal_id,
            chain_from=bytes(anchor[1]),
            chain_to=chain_to,
        )
        # Read back from the device: every block decrypts, decodes and matches the index, and
        # the header counts what was given (the blocks' sum is checked against it by verify).
        problems = verify_segment(path, self.keyring)
        if problems or segment_info(path).count != len(records):
            with contextlib.suppress(OSError):
                path.unlink()
            raise DeviceFailed(f"segment {name} did not verify after writing: {problems[:2]}")
        digest = file_sha256(path)

        def apply(ctx: WriteContext) -> None:
            ctx.conn.execute(
                "INSERT INTO segments (name, batch, records, bytes, digest, first_seq, last_seq, min_created_ms, "
                "max_created_ms, sealed_ms, local, device) VALUES (?,?,?,?,?,?,?,?,?,?,1,'A')",
                (
                    name,
                    batch,
                    len(records),
                    info.size_bytes,
                    digest,
                    int(anchor[0]) + 1,
                    last_seq,
                    info.min_created_ms,
                    info.max_created_ms,
                    ctx.ts_ms,
                ),
            )
            if last_seq > int(anchor[0]):
                ctx.conn.execute("UPDATE chain_anchor SET seq = ?, chain = ? WHERE id = 1", (last_seq, chain_to))
            ctx.emit(
                "segment_sealed",
                {
                    "batch": batch,
                    "name": name,
                    "records": len(records),
                    "digest": digest,
                    "chain_to": chain_to.hex(),
                    "sealed_through_seq": last_seq,
                },
            )

        try:
            self.journal.write(apply, klass=SETTLEMENT)
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        finally:
            self._catalogue = None
        self.mirror_segment(name, digest)
        return len(records)

    def purge_sealed_rows(self) -> int:
        """Delete hot rows and events that sealed segments already hold, in small writes; rows deleted."""
        conn = self.journal.conn
        deleted = 0
        while True:
            anchor = int(conn.execute("SELECT seq FROM chain_anchor WHERE id = 1").fetchone()[0])
            ev = [r[0] for r in conn.execute("SELECT seq FROM events WHERE seq <= ? LIMIT ?", (anchor, DELETE_CHUNK))]
            tx = [
                r[0]
                for r in conn.execute(
                    "SELECT invoice FROM transactions WHERE batch IN (SELECT batch FROM segments) LIMIT ?",
                    (DELETE_CHUNK,),
                )
            ]
            if not ev and not tx:
                break

            def apply(ctx: WriteContext, ev: list[int] = ev, tx: list[int] = tx) -> None:
                ctx.conn.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in ev])
                ctx.conn.executemany("DELETE FROM transactions WHERE invoice = ?", [(i,) for i in tx])

            try:
                self.journal.write(apply, klass=SETTLEMENT)
            except StorageFull:
                break
            deleted += len(ev) + len(tx)
        if deleted:
            self.records.forget_cached_counts()
        return deleted

    # -- reading ------------------------------------------------------------------------------
    def find(self, invoice: int) -> dict[str, Any] | None:
        """A sealed transaction by invoice (local segments; evicted ones are not fetched).

        A damaged local segment does not hide the others: it is passed over, and only when the
        invoice is in no intact segment and could be in a damaged one is that said.

        :raises SegmentCorrupt: not found, and a damaged local segment may hold it (named).
        """
        damaged: list[str] = []
        found = self._find_local(invoice, damaged)
        if found is None and damaged:
            error = SegmentCorrupt(
                f"invoice {invoice:06d} is in no intact segment on this device, and segment(s) "
                f"{', '.join(damaged)} that may hold it are damaged: run tillvault scrub (it fetches an "
                "acknowledged segment back from the archive, or copies it from the other device)"
            )
            error.segments = tuple(damaged)  # type: ignore[attr-defined]
            raise error
        return found

    def _find_local(self, invoice: int, damaged: list[str]) -> dict[str, Any] | None:
        for seg in reversed(self._catalogue_rows()):
            if not seg["local"]:
                continue
            cached = self._by_invoice.get(seg["name"])
            if cached is not None:
                if invoice in cached:
                    return dict(cached[invoice])
                continue
            path = self.segment_path(seg["name"])
            key = (seg["name"], seg["digest"])
            span = self._invoice_spans.get(key)
            if span is None:
                try:  # the header alone (segments never change): no key, no decryption
                    info = segment_info(path)
                except FileNotFoundError:
                    continue
                except SegmentCorrupt:
                    damaged.append(seg["name"])
                    continue
                span = self._invoice_spans[key] = (info.min_invoice, info.max_invoice)
            if span[0] is None or span[1] is None or not span[0] <= invoice <= span[1]:
                continue
            try:
                rows = read_segment(path, self.keyring)
            except FileNotFoundError:
                continue
            except SegmentCorrupt:
                damaged.append(seg["name"])
                continue
            # Refunds and reprints come in runs: keep the last few segments decoded.
            by_invoice = {r["invoice"]: r for r in rows}
            self._by_invoice[seg["name"]] = by_invoice
            while len(self._by_invoice) > 4:
                self._by_invoice.pop(next(iter(self._by_invoice)))
            if invoice in by_invoice:
                return dict(by_invoice[invoice])
        return None

    def _archived(
        self, sink: ArchiveSink | None, *, from_batch: int = 0, strict: bool = False, damaged: tuple[str, ...] = ()
    ) -> Iterator[tuple[dict[str, Any], Path, bytes | None]]:
        """Evicted segments (newest first, batch >= ``from_batch``) whose archive copy verifies,
        read where they lie: a folder's copy by its path, the back office's into memory (its
        digest checked). Nothing is written to the terminal's disk. Local segments named in
        ``damaged`` that the archive acknowledged are read from the archive too.

        :raises ArchiveUnavailable: with ``strict``, a segment that cannot be read (no archive,
            unreachable, or no verified copy): the caller must not act as if it held nothing.
        """
        for seg in reversed(self._catalogue_rows()):
            if seg["batch"] < from_batch:
                continue
            if seg["local"] and not (seg["name"] in damaged and seg["acked_ms"] is not None):
                continue
            held = self._archived_copy(sink, seg)
            if held is not None:
                yield seg, held[0], held[1]
            elif strict:
                raise ArchiveUnavailable(
                    f"segment {seg['name']} (batch {seg['batch']}) left the terminal and its archive copy "
                    "cannot be read now"
                )

    @staticmethod
    def _archived_copy(sink: ArchiveSink | None, seg: dict[str, Any]) -> tuple[Path, bytes | None] | None:
        """Where an evicted segment's verified copy can be read: a folder's file by its path, or
        the back office's bytes in memory (digest checked); None when there is none now."""
        root = getattr(sink, "root", None)
        read: Callable[[str, str], bytes] | None = getattr(sink, "read", None)
        if root is not None and sink is not None and sink.has(seg["name"], seg["digest"]):
            return Path(root) / seg["name"], None
        if root is None and read is not None:
            with contextlib.suppress(ArchiveUnavailable):
                data = read(seg["name"], seg["digest"])
                if data is not None:
                    return Path(seg["name"]), data
        return None

    def find_archived(
        self, invoice: int, sink: ArchiveSink | None, *, damaged: tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        """A transaction of an evicted segment, read from its verified archive copy (a refund of
        a sale settled long ago, a reprint); None when no reachable copy holds it. ``damaged``:
        local segments damaged on this device, read from the archive's copy where it has one."""
        for _seg, path, data in self._archived(sink, damaged=damaged):
            with contextlib.suppress(FileNotFoundError, StorageError, KeyRingError):
                rec = find(path, self.keyring, invoice=invoice, data=data)
                if rec is not None:
                    return rec
        return None

    def archived_refunds(self, original_invoice: int, sink: ArchiveSink | None, *, from_batch: int) -> int:
        """Minor units refunded against ``original_invoice`` in evicted segments from ``from_batch`` on.

        :raises ArchiveUnavailable: one of those segments cannot be read: the total is unknown.
        """
        total = 0
        for seg, path, data in self._archived(sink, from_batch=from_batch, strict=True):
            try:
                total += sum(
                    r["amount"]
                    for r in read_segment(path, self.keyring, data=data)
                    if r["kind"] == "refund"
                    and r["original_invoice"] == original_invoice
                    and r["status"] in ("approved", "offline_approved")
                )
            except (FileNotFoundError, StorageError, KeyRingError) as exc:
                raise ArchiveUnavailable(f"segment {seg['name']} cannot be read from the archive: {exc}") from exc
        return total

    def sealed_records(
        self,
        sink: ArchiveSink | None = None,
        *,
        batch: int | None = None,
        archived: bool = False,
        created_between: tuple[int, int] | None = None,
    ) -> tuple[Iterator[dict[str, Any]], list[str]]:
        """Records of sealed segments, newest batch first: local ones, and with ``archived`` the
        evicted ones too, read from their verified archive copies (nothing written here). Also
        the names of segments that cannot be read now, filled in as the iterator goes.

        ``batch``: only that batch's segment; ``created_between`` (ms): only segments whose
        records were created in that span, by the catalogue (the others are not read at all).
        A segment is read only when the iterator gets to it.
        """
        missing: list[str] = []

        def outside(seg: dict[str, Any]) -> bool:
            if created_between is None or seg["min_created_ms"] is None or seg["max_created_ms"] is None:
                return False
            return seg["max_created_ms"] < created_between[0] or seg["min_created_ms"] > created_between[1]

        def records() -> Iterator[dict[str, Any]]:
            for seg in reversed(self._catalogue_rows()):
                if (batch is not None and seg["batch"] != batch) or not (seg["local"] or archived) or outside(seg):
                    continue
                try:
                    if seg["local"]:
                        rows = read_segment(self.segment_path(seg["name"]), self.keyring)
                    else:
                        held = self._archived_copy(sink, seg)
                        if held is None:
                            raise ArchiveUnavailable(seg["name"])
                        rows = read_segment(held[0], self.keyring, data=held[1])
                except (ArchiveUnavailable, OSError, StorageError, KeyRingError):
                    # A local copy that cannot be read is damaged here, not away in the archive.
                    missing.append(f"{seg['name']} (damaged on this device)" if seg["local"] else seg["name"])
                    continue
                yield from reversed(rows)

        return records(), missing

    def aggregates(self) -> list[dict[str, Any]]:
        """Per local segment (cached: segments never change): live sales by (day, card) and by day,
        refunds by original invoice, refunds without one by (day, card), and idempotency keys; what
        limits, refund bounds and retries must still see once a batch has left the hot tier. The
        list is shared: read it, never change it."""
        catalogue = self._catalogue_rows()
        kept = self._aggregates_list
        if kept is not None and kept[0] is catalogue:
            return kept[1]  # same catalogue, every local segment already read: three times a sale
        out = []
        complete = True
        for seg in catalogue:
            if not seg["local"]:
                continue
            agg = self._aggregates.get(seg["name"])
            if agg is None:
                try:
                    rows = read_segment(self.segment_path(seg["name"]), self.keyring)
                except (StorageError, KeyRingError, FileNotFoundError):
                    complete = False  # tried again at the next call, not remembered as absent
                    continue
                agg = {"card_day": {}, "day": {}, "refunded": {}, "unreferenced": {}, "idem": {}}
                for r in rows:
                    live = r["status"] in ("approved", "offline_approved")
                    if r["kind"] in ("sale", "offline_sale") and live:
                        for key, table in (
                            ((r["business_date"], r["card_token"]), "card_day"),
                            (r["business_date"], "day"),
                        ):
                            amount, count = agg[table].get(key, (0, 0))
                            agg[table][key] = (amount + r["amount"], count + 1)
                    if r["kind"] == "refund" and live and r["original_invoice"] is not None:
                        agg["refunded"][r["original_invoice"]] = (
                            agg["refunded"].get(r["original_invoice"], 0) + r["amount"]
                        )
                    if r["kind"] == "refund" and live and r["original_invoice"] is None:
                        key = (r["business_date"], r["card_token"])
                        agg["unreferenced"][key] = agg["unreferenced"].get(key, 0) + r["amount"]
                    if r["idem_key"]:
                        agg["idem"][r["idem_key"]] = r["invoice"]
                self._aggregates[seg["name"]] = agg
            out.append(agg)
        self._aggregates_list = (catalogue, out) if complete else None
        return out

    # -- cold tier ----------------------------------------------------------------------------
    def offload(self, sink: ArchiveSink, *, limit: int = 1000) -> TierReport:
        """Send unacknowledged local segments to ``sink``; record each acknowledgement."""
        report = TierReport(errors=[])
        rows = self.journal.conn.execute(
            "SELECT * FROM segments WHERE acked_ms IS NULL AND local = 1 ORDER BY batch LIMIT ?", (limit,)
        ).fetchall()
        for seg in rows:
            path = self.segment_path(seg["name"])
            try:
                sink.put(path, seg["digest"])
            except ArchiveUnavailable as exc:
                report.errors.append(str(exc))  # type: ignore[union-attr]
                break
            self._mark(seg["name"], "segment_acknowledged", acked_ms=True, sink=sink.name)
            report.offloaded += 1
        return report

    def evict(self, sink: ArchiveSink, *, keep_days: float, now_ms: int) -> TierReport:
        """Delete local copies that are acknowledged, verified in ``sink`` and older than ``keep_days``."""
        report = TierReport(errors=[])
        rows = self.journal.conn.execute(
            "SELECT * FROM segments WHERE acked_ms IS NOT NULL AND local = 1 AND sealed_ms <= ? ORDER BY batch",
            (now_ms - int(keep_days * DAY_MS),),
        ).fetchall()
        for seg in rows:
            if not sink.has(seg["name"], seg["digest"]):
                report.errors.append(f"{seg['name']}: the archive no longer holds a verified copy; kept")  # type: ignore[union-attr]
                continue
            self._mark(seg["name"], "segment_evicted", local=0, evicted=True)
            for _, copy in self.copies(seg["name"]):
                with contextlib.suppress(FileNotFoundError):
                    copy.unlink()
            report.evicted += 1
            report.freed_bytes += int(seg["bytes"])
        return report

    def fetch(self, sink: ArchiveSink, name: str) -> Path:
        """Bring an evicted segment back (verified).

        :raises ArchiveUnavailable: the sink cannot give a verified copy.
        """
        seg = self.journal.conn.execute("SELECT * FROM segments WHERE name = ?", (name,)).fetchone()
        if seg is None:
            raise InvalidInput(f"no segment named {name}")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = sink.fetch(name, self.segment_path(name), seg["digest"])
        self._mark(name, "segment_fetched", local=1)
        return path

    def _mark(
        self,
        name: str,
        event: str,
        *,
        acked_ms: bool = False,
        sink: str | None = None,
        local: int | None = None,
        evicted: bool = False,
    ) -> None:
        def apply(ctx: WriteContext) -> None:
            conn: sqlite3.Connection = ctx.conn
            if acked_ms:
                conn.execute("UPDATE segments SET acked_ms = ?, sink = ? WHERE name = ?", (ctx.ts_ms, sink, name))
            if local is not None:
                conn.execute("UPDATE segments SET local = ? WHERE name = ?", (local, name))
            if evicted:
                conn.execute("UPDATE segments SET evicted_ms = ? WHERE name = ?", (ctx.ts_ms, name))
            ctx.emit(event, {"name": name, "sink": sink})

        try:
            self.journal.write(apply, klass=SETTLEMENT)
        finally:
            self._catalogue = None

    def verify_archive(
        self, sink: ArchiveSink | None, *, repair: bool = False
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Check the archive's copy of every segment it acknowledged (digest of the whole file).

        A missing or damaged copy of a segment the terminal still holds is sent again with
        ``repair``; one the terminal has evicted cannot be, and is reported as the loss it is.
        An archive that is not reachable (unplugged) is said so in the summary, not a problem.
        Returns (``{"configured", "reachable", "checked", "other_sink"}``, problems).
        """
        summary: dict[str, Any] = {"configured": sink is not None, "reachable": False, "checked": 0, "other_sink": 0}
        if sink is None:
            return summary, []
        root = getattr(sink, "root", None)
        where = root if root is not None else sink.name
        acked = [seg for seg in self._catalogue_rows() if seg["acked_ms"] is not None]
        reachable = getattr(sink, "reachable", None)
        if reachable is not None and not reachable():
            # Unplugged, unmounted (an empty mount point on the terminal's own disk), or not
            # answering: said so, not reported as a loss.
            summary["why"] = f"{where} is not reachable (not mounted, unplugged, or not answering)"
            return summary, []
        summary["reachable"] = True
        problems: list[dict[str, Any]] = []
        for seg in acked:
            if seg["sink"] not in (None, sink.name):  # acknowledged by an archive configured before
                summary["other_sink"] += 1
                continue
            summary["checked"] += 1
            if sink.has(seg["name"], seg["digest"]):
                continue
            entry: dict[str, Any] = {
                "where": "archive",
                "segment": seg["name"],
                "device": "archive",
                "problem": f"the archive's copy in {where} is missing or damaged (its digest differs)",
            }
            good = next(
                (path for _, path in self.copies(seg["name"]) if path.is_file() and file_sha256(path) == seg["digest"]),
                None,
            )
            if good is None:
                entry["problem"] += (
                    "; the terminal no longer holds this segment (evicted): restore the archive from its own backup"
                )
            elif repair:
                try:
                    sink.put(good, seg["digest"])
                    entry["repaired"] = "sent again from the terminal's copy"
                except (ArchiveUnavailable, OSError) as exc:
                    entry["repair_failed"] = str(exc)
            problems.append(entry)
        return summary, problems

    def verify(self, *, repair: bool = False, sink: ArchiveSink | None = None) -> list[dict[str, Any]]:
        """Problems with local segment copies on each device; with ``repair`` a bad or missing copy
        is replaced from a good one (and reported as repaired): the other device's, or else the
        copy ``sink`` (the archive) acknowledged, fetched back and checked against the catalogue."""
        problems = []
        for seg in self.catalogue():
            if not seg["local"]:
                continue
            good: Path | None = None
            bad: list[tuple[str, Path, str]] = []
            for device, path in self.copies(seg["name"]):
                if not path.exists():
                    if device == "A" or self.mirror_folder is not None:
                        bad.append((device, path, "copy missing"))
                    continue
                found = verify_segment(path, self.keyring)
                if found or file_sha256(path) != seg["digest"]:
                    bad.append((device, path, "; ".join(found) or "file digest differs from the catalogue"))
                elif good is None:
                    good = path
            if good is None and not bad:
                continue
            from_archive = sink is not None and seg["acked_ms"] is not None and seg["sink"] in (None, sink.name)
            for device, path, why in bad:
                entry = {"where": "segments", "segment": seg["name"], "device": device, "problem": why}
                if repair and good is not None:
                    from tillvault.store.archive import DirectorySink

                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    try:
                        DirectorySink(path.parent).put(good, seg["digest"])
                        entry["repaired"] = f"copied from device {'A' if good.parent == self.folder else 'B'}"
                    except (ArchiveUnavailable, OSError) as exc:
                        entry["repair_failed"] = str(exc)
                elif repair and from_archive:
                    assert sink is not None
                    try:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        sink.fetch(seg["name"], path, seg["digest"])  # verified against the catalogue's digest
                        entry["repaired"] = f"fetched back from the archive ({sink.name})"
                        good = path
                    except (ArchiveUnavailable, OSError) as exc:
                        entry["repair_failed"] = f"the archive's copy could not be fetched: {exc}"
                elif not from_archive and good is None:
                    entry["problem"] += "; no good copy on a device, and the archive has not acknowledged this segment"
                problems.append(entry)
        return problems

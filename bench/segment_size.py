"""Bytes per transaction in the warm tier vs JSON and Parquet+zstd, on the reference workload.

Usage: ``python bench/segment_size.py [--records 60000] [--seed N] [--json]``

Seals the reference records (``tillvault.sim.reference_records``) one segment per daily batch
(about 2,000 records each) and once as a single 10,000-record segment, and sets beside them:

* JSON: one object per record with the table's ordinary key names (``json.dumps``, one per
  line) — the "naive" size of DESIGN.md; also compact JSON and JSON lines + zstd-19;
* Parquet with zstd (pyarrow; one file per batch, and one file with a row group per batch) at
  pyarrow's default zstd level and at level 19 — skipped with a message without pyarrow;
* our segment at other block sizes, and with a zstd dictionary trained on the first week
  (by id, and what it would cost embedded in every segment).

Sizes are deterministic (no timing here; ``bench/seal_speed.py`` times).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import zstandard

from tillvault.sim import REFERENCE_SEED, reference_records
from tillvault.store.keys import KeyRing
from tillvault.store.segment_codec import COLUMNS, INT_COLUMNS, encode_block
from tillvault.store.segments import seal_segment

GOAL_JSON_FRACTION = 0.10
GOAL_PARQUET_FRACTION = 0.70


def by_batch(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Records grouped by batch number, in batch order."""
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[r["batch"]].append(r)
    return [groups[b] for b in sorted(groups)]


def json_lines(records: list[dict[str, Any]], **kw: Any) -> bytes:
    """One JSON object per line."""
    return "".join(json.dumps(r, ensure_ascii=False, **kw) + "\n" for r in records).encode("utf-8")


def seal_sizes(groups: list[list[dict[str, Any]]], folder: Path, ring: KeyRing, **kw: Any) -> list[int]:
    """File size of each group sealed as one segment."""
    sizes = []
    for i, group in enumerate(groups):
        info = seal_segment(
            group, folder / f"seg-{i}.tvseg", ring, batch=group[0]["batch"], terminal_id="TV000001", **kw
        )
        sizes.append(info.size_bytes)
    return sizes


def parquet_sizes(groups: list[list[dict[str, Any]]], level: int | None) -> tuple[int, int] | None:
    """(sum of one file per group, one file with a row group per group) in bytes, or None without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    schema = pa.schema([(c, pa.int64() if c in INT_COLUMNS else pa.string()) for c in COLUMNS])

    def table(group: list[dict[str, Any]]) -> Any:
        return pa.Table.from_pylist(group, schema=schema)

    per_file = 0
    for group in groups:
        buf = io.BytesIO()
        pq.write_table(table(group), buf, compression="zstd", compression_level=level)
        per_file += len(buf.getvalue())
    buf = io.BytesIO()
    with pq.ParquetWriter(buf, schema, compression="zstd", compression_level=level) as writer:
        for group in groups:
            writer.write_table(table(group), row_group_size=len(group))
    return per_file, len(buf.getvalue())


def train_dictionary(groups: list[list[dict[str, Any]]], size: int = 16384) -> bytes:
    """A zstd dictionary trained on column-encoded chunks of ``groups``."""
    samples = [encode_block(g[i : i + 100]) for g in groups for i in range(0, len(g), 100)]
    return zstandard.train_dictionary(size, samples, level=19).as_bytes()


def measure(n: int, seed: int) -> dict[str, Any]:
    records = reference_records(n, seed)
    groups = by_batch(records)
    ten_k = [records[:10_000]]
    out: dict[str, Any] = {
        "records": n,
        "seed": seed,
        "batches": len(groups),
        "batch_sizes": [min(map(len, groups)), statistics.median(map(len, groups)), max(map(len, groups))],
        "bytes_per_tx": {},
    }
    sizes = out["bytes_per_tx"]

    def put(name: str, day_total: float | None, ten_total: float | None) -> None:
        sizes[name] = {
            "day_batches": None if day_total is None else day_total / n,
            "batch_10k": None if ten_total is None else ten_total / len(ten_k[0]),
        }

    put("json_lines", len(json_lines(records)), len(json_lines(ten_k[0])))
    put(
        "json_compact",
        len(json_lines(records, separators=(",", ":"))),
        len(json_lines(ten_k[0], separators=(",", ":"))),
    )
    z = zstandard.ZstdCompressor(level=19)
    put(
        "json_lines_zstd19",
        sum(len(z.compress(json_lines(g))) for g in groups),
        len(z.compress(json_lines(ten_k[0]))),
    )
    for level, label in ((None, "default"), (19, "19")):
        day = parquet_sizes(groups, level)
        ten = parquet_sizes(ten_k, level)
        if day is None or ten is None:
            out["parquet"] = "skipped: pyarrow is not installed (pip install 'tillvault[bench]')"
            break
        put(f"parquet_zstd{label}_file_per_batch", day[0], ten[0])
        put(f"parquet_zstd{label}_row_group_per_batch", day[1], ten[1])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ring = KeyRing.create(folder / "ring" / "keyring.json")
        put("tillvault_segment", sum(seal_sizes(groups, folder, ring)), sum(seal_sizes(ten_k, folder, ring)))
        for block in (512, 1024, 2048, 8192):
            put(
                f"tillvault_segment_block{block}",
                sum(seal_sizes(groups, folder, ring, block_records=block)),
                sum(seal_sizes(ten_k, folder, ring, block_records=block)),
            )
        # A dictionary trained on the first week, used for the later batches only.
        train, later = groups[:7], groups[7:]
        later_n = sum(map(len, later))
        dictionary = train_dictionary(train)
        plain_later = sum(seal_sizes(later, folder, ring))
        by_id = sum(seal_sizes(later, folder, ring, dictionary=dictionary))
        out["dictionary"] = {
            "trained_on_batches": len(train),
            "dictionary_bytes": len(dictionary),
            "later_batches_bytes_per_tx_without": plain_later / later_n,
            "later_batches_bytes_per_tx_by_id": by_id / later_n,
            "later_batches_bytes_per_tx_embedded": (by_id + len(dictionary) * len(later)) / later_n,
        }
    ours = sizes["tillvault_segment"]
    parquet = {k: v for k, v in sizes.items() if k.startswith("parquet")}
    out["goals"] = {
        "json_fraction": ours["day_batches"] / sizes["json_lines"]["day_batches"],
        "json_compact_fraction": ours["day_batches"] / sizes["json_compact"]["day_batches"],
        "best_parquet_fraction": ours["day_batches"] / min(v["day_batches"] for v in parquet.values())
        if parquet
        else None,
        "best_parquet_fraction_10k": ours["batch_10k"] / min(v["batch_10k"] for v in parquet.values())
        if parquet
        else None,
        "goal_json_fraction": GOAL_JSON_FRACTION,
        "goal_parquet_fraction": GOAL_PARQUET_FRACTION,
    }
    return out


def summary(result: dict[str, Any]) -> str:
    lo, mid, hi = result["batch_sizes"]
    lines = [
        f"Reference workload: {result['records']:,} records (seed {result['seed']}), {result['batches']} daily "
        f"batches of {lo:,}-{hi:,} (median {mid:,.0f}); and records 1-10,000 as one batch.",
        "",
        f"{'format':44s} {'B/tx day batches':>17s} {'B/tx 10k batch':>15s} {'ours / this':>12s}",
    ]
    sizes = result["bytes_per_tx"]
    ours = sizes["tillvault_segment"]["day_batches"]
    for name, v in sizes.items():
        day, ten = v["day_batches"], v["batch_10k"]
        lines.append(f"{name:44s} {day:17.1f} {ten:15.1f} {ours / day:12.3f}")
    if "parquet" in result:
        lines.append(f"parquet: {result['parquet']}")
    d = result["dictionary"]
    lines += [
        "",
        f"zstd dictionary ({d['dictionary_bytes']:,} B, trained on the first {d['trained_on_batches']} batches), "
        "later batches:",
        f"  without {d['later_batches_bytes_per_tx_without']:.2f} B/tx; "
        f"by id {d['later_batches_bytes_per_tx_by_id']:.2f} B/tx; "
        f"embedded in every segment {d['later_batches_bytes_per_tx_embedded']:.2f} B/tx",
    ]
    g = result["goals"]
    ok_json = g["json_fraction"] <= GOAL_JSON_FRACTION
    lines += [
        "",
        f"goal: <= {GOAL_JSON_FRACTION:.0%} of JSON: {g['json_fraction']:.3f} of JSON lines "
        f"(1/{1 / g['json_fraction']:.1f}), {g['json_compact_fraction']:.3f} of compact JSON -> "
        + ("MET" if ok_json else "MISSED"),
    ]
    if g["best_parquet_fraction"] is not None:
        ok_pq = max(g["best_parquet_fraction"], g["best_parquet_fraction_10k"]) <= GOAL_PARQUET_FRACTION
        lines.append(
            f"goal: <= {GOAL_PARQUET_FRACTION} x the best Parquet+zstd: {g['best_parquet_fraction']:.3f} (day batches),"
            f" {g['best_parquet_fraction_10k']:.3f} (10k batch) -> " + ("MET" if ok_pq else "MISSED")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=REFERENCE_SEED)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON, then the summary")
    args = parser.parse_args(argv)
    result = measure(args.records, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    print(summary(result), file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The cost of mirroring: sale commit p99 with two devices against one, in the same run.

Two journals are written in interleaved rounds: one on device A alone, one on A mirrored
to B (every write applied to both before it is acknowledged). Device A and B are folders
on the disks given (default: two temp folders on the same disk, which is the worst case
because both fsyncs queue on one device).

    python bench/mirror_cost.py [--records 2000] [--a DIR] [--b DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from commit_latency import percentile, sale_record_once
from tillvault.store.journal import Journal
from tillvault.store.records import Records


def run(n: int, a: Path, b: Path) -> dict:
    """``n`` sale records on one device and ``n`` mirrored on two, interleaved in rounds of 50."""
    single = Journal(a / "single" / "journal.db").open()
    primary = Journal(a / "mirrored" / "journal.db").open()
    mirror = Journal(b / "mirrored" / "journal.db", device="B").open()
    for j in (single, primary):
        j.grow_free_pages(4 * 1024 * 1024)
    primary.resilver(mirror)
    mirror.grow_free_pages(4 * 1024 * 1024)
    one, two = Records(single, "TV000001"), Records(primary, "TV000001")
    t1: list[float] = []
    t2: list[float] = []
    try:
        for i in range(10):
            sale_record_once(one, i)
            sale_record_once(two, i)
        done = 0
        while done < n:
            for i in range(50):
                t1.append(sale_record_once(one, done + i))
                t2.append(sale_record_once(two, done + i))
            done += 50
        assert primary.mirror is mirror and mirror.tip == primary.tip, "the mirror must have kept up"
    finally:
        for j in (single, primary, mirror):
            j.close()
    out = {
        "records": n,
        "one_device_p50_ms": statistics.median(t1) * 1000,
        "one_device_p99_ms": percentile(t1, 99) * 1000,
        "two_devices_p50_ms": statistics.median(t2) * 1000,
        "two_devices_p99_ms": percentile(t2, 99) * 1000,
    }
    out["p50_ratio"] = out["two_devices_p50_ms"] / out["one_device_p50_ms"]
    out["p99_ratio"] = out["two_devices_p99_ms"] / out["one_device_p99_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--a", type=Path, default=None, help="folder on device A")
    parser.add_argument("--b", type=Path, default=None, help="folder on device B")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    a = Path(tempfile.mkdtemp(prefix="tv-mirror-a-", dir=args.a))
    b = Path(tempfile.mkdtemp(prefix="tv-mirror-b-", dir=args.b))
    try:
        out = run(args.records, a, b)
    finally:
        shutil.rmtree(a, ignore_errors=True)
        shutil.rmtree(b, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"sale record, one device:  p50 {out['one_device_p50_ms']:.3f} ms  p99 {out['one_device_p99_ms']:.3f} ms")
    print(f"sale record, two devices: p50 {out['two_devices_p50_ms']:.3f} ms  p99 {out['two_devices_p99_ms']:.3f} ms")
    print(f"cost of mirroring: p50 {out['p50_ratio']:.2f}x  p99 {out['p99_ratio']:.2f}x")


if __name__ == "__main__":
    main()

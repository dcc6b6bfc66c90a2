"""Settlement of a 10,000-transaction batch: close, reconcile and report, with and without upload.

Two terminals each sell the same 10,000 sales through the real pipeline to the reference host
(a separate process). The first closes balanced (0500 only); for the second the host has lost
one sale, so the close runs a full batch upload (10,000 × 0320) and the closing 0500 again.
Each close is followed by the three-way reconciliation. Both are timed in the same run; the
ratio is what the batch upload costs.

    python bench/settle.py [--sales 10000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

from tillvault.domain import iso8583 as iso
from tillvault.domain.cards import luhn_check_digit
from tillvault.host.client import HostClient
from tillvault.host.ledger import HostLedger
from tillvault.host.payout import run_payout
from tillvault.host.process import start_host_process
from tillvault.terminal.defaults import DEMO_MERCHANT_QR
from tillvault.terminal.reconcile import reconcile
from tillvault.terminal.terminal import Terminal

SECRET = "bench-settle"


def _terminal(work: Path, name: str, host: str) -> Terminal:
    t = Terminal.init(
        work / name,
        terminal_id=name,
        merchant_qr=DEMO_MERCHANT_QR,
        host=host,
        keyring_dir=work / "keyring",
        limits={"max_per_card_per_day": 10**12, "max_per_terminal_per_day": 10**13, "currency": "CNY"},
    )
    t.config.batch_max_count = 10**9
    return t


def run(n: int, work: Path) -> dict:
    """Sell ``n`` on two terminals, then time both closes and reconciliations."""
    os.environ["TILLVAULT_HOST_SECRET"] = SECRET
    pans = [p + luhn_check_digit(p) for p in (f"62284800{i:07d}" for i in range(500))]
    out: dict = {"sales": n}
    with start_host_process(work / "host") as host:
        terms = {name: _terminal(work, name, host.address) for name in ("TVBAL001", "TVUPL001")}
        t0 = time.perf_counter()
        for i in range(n):
            for t in terms.values():
                r = t.sale(100 + i % 9000, pans[i % len(pans)], "3012")
                assert r.status == "approved", r.reason
        out["selling_s"] = time.perf_counter() - t0
        # The host loses one sale of the second terminal: its close needs a full upload.
        t = terms["TVUPL001"]
        lost = t.records.list(limit=1)[0]
        with HostClient(host.address) as rogue:
            rogue.exchange(iso.reversal_request(t._rebuild_request(lost)))
        for name, key in (("TVBAL001", "balanced"), ("TVUPL001", "upload")):
            t = terms[name]
            t0 = time.perf_counter()
            report = t.settle()
            close_s = time.perf_counter() - t0
            table = report.lines()
            t0 = time.perf_counter()
            ledger = HostLedger(work / "host")
            run_payout(ledger, date.today(), today=date.today())
            ledger.close()
            rec = reconcile(t, work / "host")
            rec_s = time.perf_counter() - t0
            assert report.balanced and rec["ok"], (report.to_dict(), rec["differences"][:3])
            out[key] = {
                "close_s": close_s,
                "reconcile_s": rec_s,
                "uploaded": report.uploaded,
                "sales_count": report.totals.sales_count,
                "report_lines": len(table),
            }
        for t in terms.values():
            t.close()
    out["upload_close_ratio"] = out["upload"]["close_s"] / out["balanced"]["close_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tv-settle-"))
    try:
        out = run(args.sales, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    b, u = out["balanced"], out["upload"]
    print(f"{out['sales']:,}-transaction batch (selling took {out['selling_s']:.0f} s for both terminals)")
    print(f"balanced close (0500 only):        {b['close_s']:.2f} s; reconcile (3 views) {b['reconcile_s']:.2f} s")
    print(
        f"close with full batch upload:      {u['close_s']:.2f} s ({u['uploaded']:,} x 0320); "
        f"reconcile {u['reconcile_s']:.2f} s"
    )
    print(f"upload close / balanced close:     {out['upload_close_ratio']:.1f}x")


if __name__ == "__main__":
    main()

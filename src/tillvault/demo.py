"""``tillvault demo``: what TillVault does, on embedded defaults, in under a minute.

At this stage the demo fills a small capacity-limited store with sales through space
admission, shows admission refusing new sales *before* the settlement reserve while
settlement-class writes still commit, and verifies the journal afterwards.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tillvault.errors import StorageFull
from tillvault.store.journal import SETTLEMENT
from tillvault.terminal.defaults import DEMO_MERCHANT_QR, DEMO_TERMINAL_ID
from tillvault.terminal.terminal import Terminal


def run_demo(workdir: Path | None = None, *, capacity: str = "2MiB", console: Console | None = None,
             seed: int = 1) -> dict[str, Any]:
    """Run the demo scenario; return its figures (also printed when ``console`` is given)."""
    console = console or Console(quiet=True)
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="tillvault-demo-"))
    rng = random.Random(seed)
    data = base / "terminal"
    keyring = base / "keyring"
    t = Terminal.init(data, terminal_id=DEMO_TERMINAL_ID, merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:8583",
                      capacity=capacity, keyring_dir=keyring)
    approved = 0
    refusal = ""
    with t, Progress(console=console, transient=True) as progress:
        task = progress.add_task("selling until the store is full", total=None)
        while True:
            try:
                with t.admit_sale():
                    amount = max(1, int(rng.lognormvariate(8.16, 0.9)))  # median ~35.00 CNY in fen
                    tx = t.records.record_intent(kind="sale", amount=amount, currency="CNY",
                                                 business_date=t.business_date(), masked_pan="622848******0001",
                                                 brand="unionpay", entry_mode="chip")
                    # A bulky receipt image per sale fills the store quickly in this first demo.
                    t.records.record_outcome(tx["invoice"], status="approved", response_code="00",
                                             rrn=f"{tx['invoice']:012d}", auth_code="A1B2C3",
                                             extra={"receipt": "r" * 1500})
                approved += 1
                progress.update(task, advance=1)
            except StorageFull as exc:
                refusal = str(exc)
                break
        before = t.status()
        settled = 0
        for invoice in range(1, approved + 1):
            t.journal.append("batch_upload", {"invoice": invoice}, klass=SETTLEMENT)
            settled += 1
        t.settlement_write("batch_closed", {"batch": 1, "count": approved})
        after = t.status()
        scrub = t.scrub()
    figures = {
        "data": str(data),
        "capacity_bytes": before["capacity_bytes"],
        "sales_approved": approved,
        "refused_before_authorization": 1,
        "refusal": refusal,
        "reserve_bytes": before["reserve_bytes"],
        "settlement_writes_after_full": settled + 1,
        "free_after_settlement_bytes": after["free_bytes"],
        "scrub_ok": scrub["ok"],
        "records_verified": scrub["checked"],
    }
    table = Table(title="TillVault demo: a 2 MiB store filled by sales")
    table.add_column("what")
    table.add_column("result", justify="right")
    table.add_row("sales approved and journalled", f"{approved:,}")
    table.add_row("capacity", f"{figures['capacity_bytes']:,} B")
    table.add_row("settlement reserve kept", f"{figures['reserve_bytes']:,} B")
    table.add_row("next sale", "refused before authorization")
    table.add_row("settlement writes after the store was full", f"{figures['settlement_writes_after_full']:,} ok")
    table.add_row("journal verified (checksums + hash chain)", f"{scrub['checked']:,} records ok" if scrub["ok"]
                  else "PROBLEMS")
    console.print(table)
    console.print(f"[bold]Refusal shown to the merchant:[/] {refusal}")
    console.print(f"Data folder: {data}")
    return figures

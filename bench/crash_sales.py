"""Crash test of whole sales: a terminal selling to a real host is killed with SIGKILL at random moments.

A child process opens the terminal (recovering what the last one left pending), then sells,
voids now and then and settles every few dozen sales against the reference host (its own
process, over TCP), printing each result as soon as the call returned (acknowledged). The
parent kills it at a random moment, and checks after every kill:

- every acknowledged sale, void and settlement is in the journal as it was acknowledged;
- once the terminal is reopened, no intent is left pending (recovery queued a reversal);
- the hash chain and every record checksum verify.

At the end the outbox is drained (the reversals reach the host) and the last batch settled,
then the money is compared: **a card is charged at the host exactly when the terminal holds an
approved record of it** (invoice by invoice, sealed batches included), every settled batch
balanced with the host, and nothing charged is missing from the terminal.

    python bench/crash_sales.py --trials 200 [--seed 1] [--json]

Run with ``--child DIR`` it is the seller.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tillvault.host.ledger import LIVE_STATUSES, HostLedger
from tillvault.host.process import start_host_process
from tillvault.terminal.defaults import DEMO_MERCHANT_QR
from tillvault.terminal.terminal import Terminal

TERMINAL = "TV900001"
HOST_SECRET = "crash-sales-host-secret"
#: Public test cards of several brands (Visa, Mastercard 5- and 2-series, UnionPay, JCB, Amex).
CARDS = (
    "4111111111111111",
    "5555555555554444",
    "2223003122003222",
    "6212345678901265",
    "3530111333300000",
    "378282246310005",
)
#: Settle after this many sales in a child (a kill may land in the middle of a settlement too).
SETTLE_EVERY = 40


def child(data: Path, start: int) -> None:
    """The seller: sale, print; now and then a void or a settlement, print; until killed."""
    print("R", flush=True)  # started: from here the kill may land in recovery too
    t = Terminal.open(data, exclusive=True)  # recovers intents a killed seller left pending
    t.config.host_timeout_s = 5.0
    rng = random.Random(start)
    i = start
    last_approved: int | None = None
    while True:
        key = f"k{i}"
        r = t.sale(amount=rng.randrange(100, 50_000), pan=CARDS[i % len(CARDS)], expiry="3012", idem_key=key)
        print(f"S {key} {r.invoice} {r.status}", flush=True)
        if r.status == "approved":
            last_approved = r.invoice
        if i % 9 == 4 and last_approved is not None:
            print(f"W {last_approved}", flush=True)  # about to void: killed now, the sale may be voided
            v = t.void(last_approved, idem_key=f"v{i}")
            print(f"V v{i} {v.invoice} {v.status} {last_approved}", flush=True)
            last_approved = None
        if i % SETTLE_EVERY == SETTLE_EVERY - 1:
            rep = t.settle()
            print(f"B {rep.batch} {int(rep.ok)} {int(rep.balanced)}", flush=True)
            last_approved = None  # a void must be in the open batch
        i += 1


def _final_status(acked: str, voided: bool, void_tried: bool) -> set[str]:
    """Statuses an acknowledged sale may legitimately have later."""
    if acked == "approved":
        if voided:
            return {"voided"}
        return {"approved", "voided"} if void_tried else {"approved"}
    if acked == "not_completed":  # its reversal reaches the host later
        return {"not_completed", "reversed"}
    return {acked}


def run_trials(trials: int, *, seed: int = 1, max_wait: float = 1.2) -> dict[str, Any]:
    """Run ``trials`` kill cycles on one terminal against one host; the tally (``problems`` must be empty)."""
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="tv-crash-sales-"))
    problems: list[str] = []
    acked: dict[int, str] = {}  # invoice -> status acknowledged
    voided: set[int] = set()  # sale invoices an acknowledged approved void cancelled
    void_tried: set[int] = set()  # sale invoices a void was started for (acknowledged or not)
    batches: dict[int, tuple[bool, bool]] = {}
    kills = recovered = sales_approved = 0
    next_index = 0
    host_dir = work / "host"
    data = work / "terminal"
    with start_host_process(host_dir, env={"TILLVAULT_HOST_SECRET": HOST_SECRET}, default_credit_limit=10**12) as host:
        try:
            Terminal.init(
                data,
                terminal_id=TERMINAL,
                merchant_qr=DEMO_MERCHANT_QR,
                host=host.address,
                keyring_dir=work / "keys",
            ).close()
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
            for trial in range(trials):
                cmd = [sys.executable, __file__, "--child", str(data), "--start", str(next_index)]
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                assert proc.stdout is not None
                first = proc.stdout.readline()  # "R" once the seller is up (or "" if it died first)
                if first.strip() != "R":
                    _, err = proc.communicate()
                    problems.append(f"trial {trial}: the seller did not start: {err.strip()[-400:]}")
                    break
                time.sleep(rng.uniform(0.01, max_wait))
                proc.send_signal(signal.SIGKILL)
                out, err = proc.communicate()
                kills += 1
                if proc.returncode != -signal.SIGKILL:
                    problems.append(f"trial {trial}: the seller ended by itself ({proc.returncode}): {err[-400:]}")
                fresh: set[int] = set()
                for line in out.split("\n")[:-1]:  # the last piece was cut by the kill: not acknowledged
                    parts = line.split()
                    if parts[:1] == ["S"] and len(parts) == 4 and parts[2] != "None":
                        acked[int(parts[2])] = parts[3]
                        fresh.add(int(parts[2]))
                        sales_approved += parts[3] == "approved"
                    elif parts[:1] == ["V"] and len(parts) == 5:
                        if parts[2] != "None":
                            acked[int(parts[2])] = parts[3]
                            fresh.add(int(parts[2]))
                        if parts[3] == "approved":
                            voided.add(int(parts[4]))
                            fresh.add(int(parts[4]))
                    elif parts[:1] == ["W"] and len(parts) == 2:
                        void_tried.add(int(parts[1]))
                        fresh.add(int(parts[1]))
                    elif parts[:1] == ["B"] and len(parts) == 4:
                        batches[int(parts[1])] = (parts[2] == "1", parts[3] == "1")
                next_index += 100_000  # fresh idempotency keys for the next seller
                with Terminal.open(data) as t:
                    t.lock()
                    recovered += len(t.recover())
                    if t.records.pending():
                        problems.append(f"trial {trial}: intents still pending after recovery")
                    full = trial % 25 == 24 or trial == trials - 1
                    # Each trial checks what it acknowledged; every 25th and the last, everything so far.
                    todo = acked if full else {i: acked[i] for i in fresh if i in acked}
                    stored = {tx["invoice"]: tx for tx in t.transactions(limit=10**9)} if full else None
                    for invoice, status in todo.items():
                        try:
                            tx = stored[invoice] if stored is not None else t.find_transaction(invoice)
                        except Exception as exc:  # reported, not raised
                            problems.append(f"trial {trial}: acknowledged invoice {invoice} ({status}) missing: {exc}")
                            continue
                        allowed = _final_status(status, invoice in voided, invoice in void_tried)
                        if tx["status"] not in allowed:
                            problems.append(
                                f"trial {trial}: invoice {invoice} acknowledged {status}, journal says {tx['status']}"
                            )
                    if full:
                        report = t.journal.verify()
                        if not report.ok:
                            problems.append(f"trial {trial}: journal verify failed: {report.problems[:3]}")
            problems += _final_check(data, host_dir, batches)
        finally:
            summary = {
                "trials": trials,
                "kills": kills,
                "acknowledged": len(acked),
                "acknowledged_approved": sales_approved,
                "voids_acknowledged": len(voided),
                "settlements_acknowledged": len(batches),
                "recovered_by_reversal": recovered,
            }
            shutil.rmtree(work, ignore_errors=True)
    return {**summary, "problems": problems, "ok": not problems and summary["acknowledged_approved"] > 0}


def _final_check(data: Path, host_dir: Path, batches: dict[int, tuple[bool, bool]]) -> list[str]:
    """Drain, settle, and compare the money at the host with the terminal's records."""
    problems = [f"batch {b} was acknowledged unbalanced" for b, (ok, bal) in batches.items() if ok and not bal]
    with Terminal.open(data, exclusive=True) as t:
        for _ in range(50):
            t.drain_outbox()
            if t.records.outbox_count() == 0:
                break
        if t.records.outbox_count():
            problems.append(f"{t.records.outbox_count()} outbox messages could not be delivered")
        rep = t.settle()
        if not (rep.ok and rep.balanced):
            problems.append(f"final settlement of batch {rep.batch}: ok={rep.ok} balanced={rep.balanced} {rep.reason}")
        mine = {
            tx["invoice"]: tx
            for tx in t.transactions(limit=10**9)
            if tx["kind"] == "sale" and tx["status"] in ("approved", "offline_approved")
        }
    ledger = HostLedger(host_dir, secret=HOST_SECRET.encode())
    try:
        charges = [
            a
            for a in ledger.authorizations()
            if a.terminal_id.strip() == TERMINAL
            and a.mti in ("0200", "0220")  # online sales and offline ones' advices
            and a.proc_code == "000000"
            and a.status in LIVE_STATUSES
        ]
    finally:
        ledger.close()
    charged = {a.invoice: a for a in charges}
    for invoice, n in sorted(Counter(a.invoice for a in charges).items()):
        if n > 1:
            problems.append(f"invoice {invoice}: charged {n} times at the host")
    for invoice in sorted(set(charged) - set(mine)):
        problems.append(f"invoice {invoice}: charged at the host ({charged[invoice].amount}) with no approved record")
    for invoice in sorted(set(mine) - set(charged)):
        problems.append(f"invoice {invoice}: approved at the terminal but not charged at the host")
    for invoice in sorted(set(mine) & set(charged)):
        if mine[invoice]["amount"] != charged[invoice].amount:
            problems.append(
                f"invoice {invoice}: {mine[invoice]['amount']} at the terminal, {charged[invoice].amount} charged"
            )
    return problems


def main() -> int:
    """Parse arguments; run the seller (``--child``) or the trials, and print the tally."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.start)
        return 0
    t0 = time.perf_counter()
    result = run_trials(args.trials, seed=args.seed)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['kills']} SIGKILLs of a selling terminal: {result['acknowledged']} acknowledged results "
            f"({result['acknowledged_approved']} approved sales, {result['voids_acknowledged']} voids, "
            f"{result['settlements_acknowledged']} settlements), {result['recovered_by_reversal']} interrupted "
            f"sales reversed: {'OK, the host charged what the terminal recorded' if result['ok'] else 'PROBLEMS'}"
        )
        for p in result["problems"][:20]:
            print("  ", p)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

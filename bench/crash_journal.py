"""Crash test of the journal: a writer is killed with SIGKILL at random moments.

A child process writes intent/outcome pairs and prints each one as soon as its write
returned (acknowledged). The parent kills it at a random moment, reopens the journal and
checks that every acknowledged record is there with its acknowledged state, that the hash
chain and every checksum verify, and reports intents left pending for recovery.

    python bench/crash_journal.py --trials 1000 [--json]

Run with ``--child DIR`` it is the writer. Optionally under ``fiu-run`` (libfiu) to inject
ENOSPC/EIO into the writer's I/O: ``--fiu 'enable_random name=posix/io/rw/pwrite,probability=0.02,failinfo=28'``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tillvault.errors import TillVaultError
from tillvault.store.encoding import GENESIS, chain_hash
from tillvault.store.journal import Journal
from tillvault.store.records import Records

TERMINAL = "TV000001"


def child(data: Path, start: int) -> None:
    """The writer: intent, print, outcome, print, forever (until killed or failing hard)."""
    journal = Journal(data / "journal.db").open()
    records = Records(journal, TERMINAL)
    print("R", flush=True)  # ready: the kill lands while writing, however slow the start was
    i = start
    failures = 0
    while failures < 200:
        key = f"k{i}"
        try:
            tx = records.record_intent(
                kind="sale",
                amount=100 + i % 5000,
                currency="CNY",
                business_date="2026-11-25",
                idem_key=key,
                masked_pan="622848******1234",
            )
            print(f"I {key} {tx['invoice']}", flush=True)
            records.record_outcome(
                tx["invoice"], status="approved", rrn=f"{i:012d}", auth_code="A1B2C3", response_code="00"
            )
            print(f"O {key} {tx['invoice']}", flush=True)
        except TillVaultError as exc:  # injected faults: not acknowledged, try the next one
            print(f"E {key} {type(exc).__name__}", flush=True)
            failures += 1
            time.sleep(0.001)
        i += 1


def run_trials(trials: int, *, seed: int = 1, fiu: str | None = None, max_wait: float = 0.4) -> dict:
    """Run ``trials`` kill cycles on one journal; return the tally (``problems`` must be empty)."""
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="tv-crash-"))
    acked_intent: dict[str, int] = {}
    acked_outcome: set[str] = set()
    problems: list[str] = []
    kills = 0
    injected = 0
    verified_seq, verified_chain = 0, GENESIS
    next_index = 0
    try:
        for trial in range(trials):
            cmd = [sys.executable, __file__, "--child", str(work), "--start", str(next_index)]
            if fiu:
                cmd = ["fiu-run", "-x", "-c", fiu, *cmd]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert proc.stdout is not None
            first = proc.stdout.readline()  # "R" once the writer is up (or "" if it died first)
            time.sleep(rng.uniform(0.02, max_wait))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate()
            out = first + out
            kills += 1
            for line in out.splitlines():
                parts = line.split()
                if len(parts) < 3:
                    continue  # a line cut by the kill was never complete: not acknowledged
                tag, key = parts[0], parts[1]
                if tag == "I":
                    acked_intent[key] = int(parts[2])
                elif tag == "O":
                    acked_outcome.add(key)
                elif tag == "E":
                    injected += 1
            next_index += 100_000  # fresh idempotency keys for the next child
            journal = Journal(work / "journal.db").open()
            try:
                records = Records(journal, TERMINAL)
                if trial % 100 == 99 or trial == trials - 1:
                    report = journal.verify()  # everything: integrity, every checksum, the whole chain
                    if not report.ok:
                        problems.append(f"trial {trial}: verify failed: {report.problems[:3]}")
                    verified_seq, verified_chain = journal.tip
                else:  # the new stretch of the chain, linked to what was verified before
                    for event in journal.events(verified_seq):
                        if not event.checksum_ok() or chain_hash(verified_chain, event.checksum) != event.chain:
                            problems.append(f"trial {trial}: event {event.seq} fails its checksum or chain link")
                            break
                        verified_seq, verified_chain = event.seq, event.chain
                stored = {
                    r[0]: (r[1], r[2])
                    for r in journal.conn.execute("SELECT idem_key, invoice, status FROM transactions")
                }
                for key, invoice in acked_intent.items():
                    found = stored.get(key)
                    tx = None if found is None else {"invoice": found[0], "status": found[1]}
                    if tx is None or tx["invoice"] != invoice:
                        problems.append(f"trial {trial}: acknowledged intent {key} (invoice {invoice}) missing")
                    elif key in acked_outcome and tx["status"] != "approved":
                        problems.append(f"trial {trial}: acknowledged outcome {key} lost (status {tx['status']})")
                pending = records.pending()
            finally:
                journal.close()
        total = len(acked_intent)
        return {
            "trials": trials,
            "kills": kills,
            "acknowledged_intents": total,
            "acknowledged_outcomes": len(acked_outcome),
            "pending_for_recovery": len(pending),
            "injected_failures": injected,
            "problems": problems,
            "ok": not problems and total > 0,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fiu", default=None, help="libfiu enable command for the writer (needs fiu-run)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.start)
        return 0
    t0 = time.perf_counter()
    result = run_trials(args.trials, seed=args.seed, fiu=args.fiu)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['kills']} SIGKILLs, {result['acknowledged_intents']} acknowledged intents, "
            f"{result['acknowledged_outcomes']} acknowledged outcomes, {result['pending_for_recovery']} pending "
            f"for recovery, {result['injected_failures']} injected failures: "
            f"{'OK, nothing acknowledged was lost' if result['ok'] else 'PROBLEMS'}"
        )
        for p in result["problems"][:20]:
            print("  ", p)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

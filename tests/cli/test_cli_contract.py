"""The command-line contract of DESIGN.md, run as a user would: separate processes, --json, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tillvault.host.process import HostProcess, start_host_process

TV = [sys.executable, "-c", "from tillvault.cli.main import main; main()"]


def tv(*args: str, data: Path | None = None, ok: tuple[int, ...] = (0,)) -> tuple[int, Any, str]:
    cmd = [*TV, *(["--data", str(data)] if data else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=os.environ.copy())
    out: Any = None
    if "--json" in args and proc.stdout.strip():
        out = json.loads(proc.stdout)
    assert proc.returncode in ok, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc.returncode, out, proc.stderr


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> HostProcess:
    with start_host_process(tmp_path_factory.mktemp("clihost"), env={"TILLVAULT_HOST_SECRET": "cli"}) as proc:
        yield proc  # type: ignore[misc]


def test_init_sale_settle_status_tx_list_scrub(tmp_path: Path, host: HostProcess) -> None:
    data = tmp_path / "till"
    _, out, _ = tv(
        "init", "--terminal-id", "TVCLI001", "--host", host.address, "--capacity", "64MiB", "--json", data=data
    )
    assert out["ok"] and out["capacity_bytes"] <= 64 * 1024 * 1024
    # The merchant the code gave (the demo code's UnionPay merchant id), as status names it too.
    assert out["merchant_id"] == out["merchant_details"]["merchant_id"] == "898310148160001"
    assert out["merchant"] == out["merchant_details"]["name"]
    code, sale, _ = tv(
        "sale", "--amount", "12.34", "--pan", "4111 1111 1111 1111", "--expiry", "3012", "--json", data=data
    )
    assert code == 0
    for key in ("status", "invoice", "reason", "masked_pan"):
        assert key in sale
    assert sale["status"] == "approved" and sale["amount"] == 1234 and sale["invoice"] == "000001"
    code, declined, _ = tv(
        "sale", "--amount", "12.34", "--pan", "4111111111111111", "--expiry", "2001", "--json", data=data, ok=(1,)
    )
    assert declined["status"] == "refused" and "expir" in declined["reason"]
    _, st, _ = tv("status", "--json", data=data)
    for key in ("capacity_bytes", "used_bytes", "free_bytes", "reserve_bytes", "pressure", "runway_days"):
        assert key in st
    _, rows, _ = tv("tx", "list", "--json", data=data)
    assert rows[0]["masked_pan"] == "411111******1111" and rows[0]["invoice"] == 1
    assert {"invoice", "status", "amount", "currency", "masked_pan", "batch"} <= set(rows[0])
    _, settled, _ = tv("settle", "--json", data=data)
    for key in ("ok", "batch", "sales_count", "sales_amount", "refunds_count", "refunds_amount", "balanced"):
        assert key in settled
    assert settled["balanced"] and settled["sales_amount"] == 1234
    _, scrub, _ = tv("scrub", "--json", data=data)
    assert scrub["ok"] and scrub["checked"] > 0 and scrub["problems"] == []


def test_bad_input_gets_one_line_reason_and_nonzero_exit(tmp_path: Path, host: HostProcess) -> None:
    data = tmp_path / "till"
    tv("init", "--host", host.address, data=data)
    _, _, err = tv("sale", "--amount", "12.345", "--pan", "4111111111111111", "--expiry", "3012", data=data, ok=(2,))
    assert "12.345" in err and len(err.strip().splitlines()) == 1
    _, _, err = tv("sale", "--amount", "abc", "--pan", "4111111111111111", data=data, ok=(2,))
    assert "abc" in err
    _, out, _ = tv("void", "999", "--json", data=data, ok=(2,))
    assert out["ok"] is False and "999" in out["reason"]
    _, _, err = tv("status", data=tmp_path / "nowhere", ok=(2,))
    assert "init" in err
    _, _, err = tv("init", "--merchant-qr", "000201010211garbage6304ABCD", data=tmp_path / "x", ok=(2,))
    assert "tag" in err.lower() or "qr" in err.lower()
    # Nothing stored was lost by the bad input.
    _, rows, _ = tv("tx", "list", "--json", data=data)
    assert rows == []


def test_sale_refused_when_the_store_is_full_exits_1_with_the_way_out(tmp_path: Path, host: HostProcess) -> None:
    data = tmp_path / "till"
    _, st, _ = tv("init", "--host", host.address, "--capacity", "2MiB", "--json", data=data)
    # The device shrinks (ageing flash): only the settlement reserve is left for the terminal.
    cfg = json.loads((data / "terminal.json").read_text())
    # (The ballast is counted out: at critical the ladder releases it, and that space carries sales.)
    cfg["space"]["quota_bytes"] = st["used_bytes"] - st["ballast_bytes"] + st["reserve_bytes"] + 1024
    (data / "terminal.json").write_text(json.dumps(cfg))
    _, out, _ = tv(
        "sale", "--amount", "1.00", "--pan", "4111111111111111", "--expiry", "3012", "--json", data=data, ok=(1,)
    )
    # Nothing sold yet: settling would free nothing, so the way out is cleaning up or offloading.
    assert out["status"] == "refused" and "tillvault cleanup" in out["reason"]
    assert "tillvault settle" not in out["reason"]


def test_tx_list_includes_settled_and_sealed_transactions(tmp_path: Path, host: HostProcess) -> None:
    data = tmp_path / "till"
    tv("init", "--host", host.address, "--terminal-id", "TVCLI003", data=data)
    for amount in ("1.00", "2.00"):
        tv("sale", "--amount", amount, "--pan", "4111111111111111", "--expiry", "3012", data=data)
    tv("settle", data=data)
    tv("sale", "--amount", "3.00", "--pan", "4111111111111111", "--expiry", "3012", data=data)
    _, rows, _ = tv("tx", "list", "--json", data=data)
    assert [r["amount"] for r in rows] == [300, 200, 100]
    assert [r["batch"] for r in rows] == [2, 1, 1]
    _, st, _ = tv("status", "--json", data=data)
    assert st["sealed_transactions"] == 2
    assert st["transactions"] == 3 and st["hot_transactions"] == 1  # all it holds, as tx list shows
    # The table shows money as money (3.00, not 300); a status is matched whatever its case.
    proc = subprocess.run(
        [*TV, "--data", str(data), "tx", "list", "--status", "APPROVED"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "3.00" in proc.stdout and " 300 " not in proc.stdout, proc.stdout
    # A typo, a batch or invoice beyond any there can be: said, never an empty list or a traceback.
    for args, message in (
        (("tx", "list", "--status", "aproved"), "status 'aproved' is not one of"),
        (("tx", "list", "--batch", "99999999999999999999"), "batch numbers run from 1 to 999,999"),
        (("void", "9223372036854775808"), "no transaction with invoice 9223372036854775808"),
    ):
        _, _, err = tv(*args, data=data, ok=(2,))
        assert message in err and "Traceback" not in err, err
    _, rows, _ = tv("tx", "list", "--limit", "99999999999999999999", "--json", data=data)
    assert len(rows) == 3


def test_cli_on_a_full_filesystem_refuses_sales_but_settles(tmp_path: Path, host: HostProcess, tmpfs) -> None:  # type: ignore[no-untyped-def]
    data = tmpfs.path / "till"
    tv("init", "--host", host.address, "--terminal-id", "TVFULL02", data=data)
    for amount in ("1.00", "2.00", "3.00"):
        tv("sale", "--amount", amount, "--pan", "6212345678901235", "--expiry", "3012", data=data)
    (data / "ballast.bin").unlink()  # the emergency margin was used up earlier (its release is tested elsewhere)
    tmpfs.fill()
    from tillvault.terminal.terminal import Terminal

    with Terminal.open(data, exclusive=True) as t:  # the headroom above the reserve takes some more (quickly)
        for _ in range(400):
            r = t.sale(100, "6212345678901235", "3012")
            if r.status == "refused":
                break
            assert r.status == "approved", r.reason
    _code, refused, _ = tv(
        "sale", "--amount", "1.00", "--pan", "6212345678901235", "--expiry", "3012", "--json", data=data, ok=(0, 1)
    )
    assert refused["status"] == "refused" and "full" in refused["reason"] and refused.get("invoice") is None
    _, settled, _ = tv("settle", "--json", data=data)
    assert settled["ok"] and settled["balanced"]  # (the terminal may already have settled on its own)
    _, rows, _ = tv("tx", "list", "--json", data=data)
    assert len([r for r in rows if r["status"] == "approved"]) >= 3
    _, st, _ = tv("status", "--json", data=data)
    assert st["pressure"] in ("critical", "exhausted")
    _, scrub, _ = tv("scrub", "--json", data=data)
    assert scrub["ok"]


def test_sales_from_parallel_processes_all_complete_on_one_chain(tmp_path: Path, host: HostProcess) -> None:
    data = tmp_path / "till"
    tv("init", "--terminal-id", "TVCLI009", "--host", host.address, "--json", data=data)
    cmd = [*TV, "--data", str(data), "sale", "--amount", "1.00", "--pan", "4111111111111111", "--expiry", "3012"]
    procs = [
        subprocess.Popen([*cmd, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0, (out, err)  # each waits its turn for the terminal; none is told its input was bad
        assert json.loads(out)["status"] == "approved"
    assert sorted(json.loads(out)["invoice"] for _, out, _ in results) == [f"{i:06d}" for i in range(1, 7)]
    _, scrub, _ = tv("scrub", "--json", data=data)
    assert scrub["ok"], scrub["problems"]


def _qr(body: str) -> str:
    from tillvault.domain.emvqr import crc16_ccitt

    body += "6304"
    return body + f"{crc16_ccitt(body.encode()):04X}"


def _tlv(tag: str, value: str) -> str:
    return f"{tag}{len(value):02d}{value}"


#: An Indonesian (QRIS-like) code in rupiah without a merchant name (tag 59).
IDR_NO_NAME = _qr(
    "000201010211"
    + _tlv("26", _tlv("00", "ID.CO.QRIS.WWW") + _tlv("01", "936000140000001234") + _tlv("02", "ID1020021181745"))
    + "52045812"
    + "5303360"
    + "5802ID"
    + "6007JAKARTA"
)


def test_init_takes_what_the_code_lacks_and_sizes_limits_for_the_currency(tmp_path: Path, host: HostProcess) -> None:
    _, _, err = tv("init", "--terminal-id", "TVIDR001", "--merchant-qr", IDR_NO_NAME, data=tmp_path / "a", ok=(2,))
    assert "tag 59" in err and "--merchant-name" in err and not (tmp_path / "a" / "terminal.json").exists()
    data = tmp_path / "b"
    _, out, _ = tv(
        "init", "--terminal-id", "TVIDR002", "--host", host.address, "--merchant-qr", IDR_NO_NAME,
        "--merchant-name", "Warung Kopi Sederhana Jaya Abadi", "--json", data=data,
    )  # fmt: skip
    assert out["merchant"] == "Warung Kopi Sederhana Jaya Abadi"  # longer than EMVCo's 25: kept whole
    # 150,000 rupiah (about ten dollars) is an everyday sale, not over a CNY-sized limit: it goes to the
    # host (whose test cards' credit is counted in minor units of any currency, so it may decline).
    _, sale, _ = tv(
        "sale", "--amount", "150000", "--pan", "4111111111111111", "--expiry", "3012", "--json", data=data, ok=(0, 1)
    )
    assert sale["status"] in ("approved", "declined") and sale["rrn"], sale["reason"]
    data = tmp_path / "c"
    tv(
        "init", "--terminal-id", "TVIDR003", "--host", host.address, "--merchant-qr", IDR_NO_NAME,
        "--merchant-name", "Warung", "--max-per-transaction", "100000", "--json", data=data,
    )  # fmt: skip
    _, over, _ = tv(
        "sale", "--amount", "150000", "--pan", "4111111111111111", "--expiry", "3012", "--json", data=data, ok=(1,)
    )
    assert over["status"] == "refused" and "per-transaction limit 100,000.00 IDR" in over["reason"].replace(
        "100000.00", "100,000.00"
    )
    _, _, err = tv(
        "init", "--merchant-qr", IDR_NO_NAME, "--merchant-name", "W", "--floor-limit", "12.3.4", data=tmp_path / "d",
        ok=(2,),
    )  # fmt: skip
    assert "--floor-limit" in err
    # A per-transaction limit above the default per-card day raises that day; contradictions are refused.
    _, out, _ = tv(
        "init", "--merchant-qr", IDR_NO_NAME, "--merchant-name", "W", "--max-per-transaction", "200000000",
        "--json", data=tmp_path / "e",
    )  # fmt: skip
    limits = json.loads((tmp_path / "e" / "terminal.json").read_text())["limits"]
    assert limits["max_per_transaction"] == limits["max_per_card_per_day"] == 200_000_000_00
    _, _, err = tv(
        "init", "--merchant-qr", IDR_NO_NAME, "--merchant-name", "W", "--max-per-transaction", "200",
        "--max-per-card-per-day", "100", data=tmp_path / "f", ok=(2,),
    )  # fmt: skip
    assert "--max-per-card-per-day (100.00 IDR) is below --max-per-transaction (200.00 IDR)" in err
    assert not (tmp_path / "f").exists()  # refused before anything was made


def test_the_card_number_can_come_on_stdin_and_the_data_folder_is_private(tmp_path: Path, host: HostProcess) -> None:
    data = tmp_path / "till"
    tv("init", "--terminal-id", "TVCLI010", "--host", host.address, "--json", data=data)
    assert (data.stat().st_mode & 0o777) == 0o700  # journal, WAL and segments readable by the owner only
    cmd = [*TV, "--data", str(data), "sale", "--amount", "3.00", "--pan", "-", "--expiry", "3012", "--json"]
    proc = subprocess.run(cmd, input="4111 1111 1111 1111\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["masked_pan"] == "411111******1111"
    proc = subprocess.run(cmd, input="", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no card number on standard input" in proc.stdout + proc.stderr


def test_text_from_a_merchant_code_prints_as_written_never_as_markup(tmp_path: Path, host: HostProcess) -> None:
    from tillvault.domain.emvqr import build_qr

    name = "Kedai [halal] A[/]B"
    qr = build_qr(
        name=name,
        city="[link=x]KL",
        country="MY",
        currency="MYR",
        mcc="5812",
        accounts=[{"gui": "A000000615000101", "fields": {"01": "890053", "02": "000000000123456"}}],
    )

    def plain(*args: str, data: Path | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [*TV, *(["--data", str(data)] if data else []), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})

    parsed = plain("qr", "parse", qr)
    assert parsed.returncode == 0 and "Traceback" not in parsed.stderr, parsed.stderr
    assert name in parsed.stdout and "[link=x]KL" in parsed.stdout
    data = tmp_path / "t"
    made = plain("init", "--terminal-id", "TVMARKUP", "--host", host.address, "--merchant-qr", qr, data=data)
    assert made.returncode == 0, made.stderr
    assert name in made.stdout
    shown = plain("status", data=data)
    assert shown.returncode == 0 and "Kedai [halal]" in shown.stdout and "A[/]B" in shown.stdout, shown.stderr
    # An error quoting what was typed keeps its brackets too.
    refused = plain("sale", "--amount", "1.00", "--pan", "4242[/]4242", "--expiry", "3012", data=data)
    assert refused.returncode != 0 and "Traceback" not in refused.stdout + refused.stderr
    assert "('[')" in refused.stdout


def test_a_command_line_that_cannot_be_parsed_is_reported_in_json_with_json(tmp_path: Path) -> None:
    _, out, err = tv("card", "check", "--json", ok=(2,))
    assert out == {"ok": False, "reason": "Missing argument 'pan'.", "error": "UsageError"}
    assert "Missing argument" in err
    _, out, _ = tv("sale", "--amount", "1.00", "--bogus", "--json", data=tmp_path / "t", ok=(2,))
    assert out["ok"] is False and "--bogus" in out["reason"]
    # Commands that run keep their own output and exit code.
    _, out, _ = tv("card", "check", "4242424242424243", "--json", ok=(2,))
    assert out["valid"] is False and "Luhn" in out["errors"][0]


def test_a_card_number_typed_into_another_field_is_never_echoed_whole(tmp_path: Path, host: HostProcess) -> None:
    data = tmp_path / "t"
    tv("init", "--terminal-id", "TVECHO01", "--host", host.address, data=data)
    pan = "4242424242424242"
    runs = [
        ("sale", "--amount", pan, "--pan", "5555555555554444", "--expiry", "3012"),
        ("sale", "--amount", f";{pan}=30121011000?", "--pan", "5555555555554444", "--expiry", "3012"),
        ("void", pan),
        ("refund", "--amount", "1.00", "--pan", "5555555555554444", "--expiry", "3012", "--original-invoice", pan),
    ]
    for args in runs:
        for extra in ((), ("--json",)):
            cmd = [*TV, "--data", str(data), *args, *extra]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=os.environ.copy())
            assert proc.returncode != 0, (args, proc.stdout)
            assert pan not in proc.stdout + proc.stderr, (args, proc.stdout, proc.stderr)


def test_an_invoice_that_cannot_exist_is_bad_input_not_a_missing_transaction(tmp_path: Path, host: HostProcess) -> None:
    data = tmp_path / "t"
    tv("init", "--terminal-id", "TVINV001", "--host", host.address, data=data)
    _, out, _ = tv("void", "0", "--json", data=data, ok=(2,))
    assert out["error"] == "InvalidInput" and "positive whole number" in out["reason"]
    refund = ("refund", "--amount", "1.00", "--pan", "4111111111111111", "--expiry", "3012")
    _, out, _ = tv(*refund, "--original-invoice", "-3", "--json", data=data, ok=(2,))
    assert "got -3" in out["reason"]


def test_an_archive_given_after_init_takes_the_sealed_batches(tmp_path: Path, host: HostProcess) -> None:
    data, nas = tmp_path / "t", tmp_path / "nas"
    tv("init", "--terminal-id", "TVARCH01", "--host", host.address, data=data)
    for amount in ("1.00", "2.00", "3.00"):
        tv("sale", "--amount", amount, "--pan", "4111111111111111", "--expiry", "3012", data=data)
    tv("settle", data=data)
    _, st, _ = tv("status", "--json", data=data)
    assert st["archive"] is None and st["sealed_segments"] >= 1 and st["evicted_segments"] == 0
    _, out, _ = tv("archive", "set", str(nas), "--json", data=data, ok=(2,))
    assert "does not exist" in out["reason"]
    nas.mkdir()
    _, out, _ = tv("archive", "set", str(nas), "--json", data=data)
    assert out["archive"] == str(nas)
    tv("cleanup", "--json", data=data)
    assert (nas / "seg-TVARCH01-000001.tvs").is_file(), list(nas.rglob("*"))
    _, st, _ = tv("status", "--json", data=data)
    assert st["archive"] == str(nas)


def test_a_qr_payload_on_stdin_is_read_as_bytes_and_a_byte_that_is_not_utf8_is_named() -> None:
    from tillvault.domain.emvqr import build_qr

    good = build_qr(name="Cafe Ole", city="Lima", country="PE", currency="PEN", mcc="5814", accounts=[{"gui": "PE.X"}])
    proc = subprocess.run([*TV, "qr", "parse", "-", "--json"], input=good.encode(), capture_output=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout)["merchant_name"] == "Cafe Ole"
    latin1 = good.replace("Cafe Ole", "Café Olé").encode("latin-1")
    proc = subprocess.run([*TV, "qr", "parse", "-", "--json"], input=latin1, capture_output=True, timeout=60)
    out = json.loads(proc.stdout)
    byte = latin1.index("é".encode("latin-1"))
    assert proc.returncode == 2 and out["errors"] == [f"payload is not valid UTF-8 (byte {byte})"], out


def test_folders_given_relative_are_kept_absolute_and_an_empty_archive_is_refused(
    tmp_path: Path, host: HostProcess
) -> None:
    def run_in(cwd: Path, *args: str, ok: tuple[int, ...] = (0,)) -> Any:
        proc = subprocess.run([*TV, *args], capture_output=True, text=True, timeout=60, cwd=cwd)
        assert proc.returncode in ok, (args, proc.stdout, proc.stderr)
        return json.loads(proc.stdout) if "--json" in args else proc

    (tmp_path / "nas").mkdir()
    out = run_in(tmp_path, "--data", "till", "init", "--terminal-id", "TVREL001", "--host", host.address,
                 "--device-b", "till/b", "--json", ok=(2,))  # fmt: skip
    assert "is inside the data folder" in out["reason"] and not (tmp_path / "till").exists()
    run_in(tmp_path, "--data", "till", "init", "--terminal-id", "TVREL001", "--host", host.address,
           "--device-b", "card-b", "--archive", "nas")  # fmt: skip
    data = tmp_path / "till"
    config = json.loads((data / "terminal.json").read_text())
    assert config["device_b"] == str(tmp_path / "card-b") and config["archive"] == str(tmp_path / "nas")
    # From another working folder, device B and the archive are still where they were.
    st = run_in(Path("/"), "--data", str(data), "status", "--json")
    assert st["archive"] == str(tmp_path / "nas")
    book = run_in(Path("/"), "--data", str(data), "runbook", "--no-probe", "--json", ok=(0, 1, 3))
    assert not any("device B" in f.get("title", "") and "gone" in f.get("title", "") for f in book["findings"]), book
    out = run_in(tmp_path, "--data", str(data), "archive", "set", "", "--json", ok=(2,))
    assert "it was empty" in out["reason"]
    assert json.loads((data / "terminal.json").read_text())["archive"] == str(tmp_path / "nas")


@pytest.mark.parametrize("module", ["tillvault", "tillvault.cli.main"])
def test_the_command_runs_as_a_module_too(module: str) -> None:
    proc = subprocess.run([sys.executable, "-m", module, "qr", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Usage:" in proc.stdout and "Traceback" not in proc.stderr, proc.stderr


def test_an_acquirer_address_mistyped_at_init_is_corrected_and_the_waiting_sales_go_there(
    tmp_path: Path, host: HostProcess
) -> None:
    data = tmp_path / "till"
    _, out, _ = tv("init", "--terminal-id", "TVACQ001", "--host", "999.1.1.1:8583", "--json", data=data, ok=(2,))
    assert "is not an IPv4 address" in out["reason"] and not data.exists()
    tv("init", "--terminal-id", "TVACQ001", "--host", "127.0.0.1:1", data=data)  # nothing listens there
    _, out, _ = tv("sale", "--amount", "5.00", "--pan", "4111111111111111", "--expiry", "3012", "--json", data=data)
    assert out["status"] == "offline_approved"
    _, out, _ = tv("acquirer", "set", "nowhere", "--json", data=data, ok=(2,))
    assert "must be HOST:PORT" in out["reason"]
    _, out, _ = tv("acquirer", "set", host.address, "--json", data=data)
    assert out["host"] == host.address
    assert json.loads((data / "terminal.json").read_text())["host"] == host.address
    _, out, _ = tv("settle", "--json", data=data)  # the advice reaches the new host first, then it settles
    assert out["ok"] and out["balanced"], out

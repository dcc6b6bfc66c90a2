"""The fleet back office on a real PostgreSQL, served over real HTTP, read in a real browser:
terminals report their storage health; the dashboard puts the one about to fill first."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg", reason="the back office extras are not installed (pip install '.[dev]')")
uvicorn = pytest.importorskip("uvicorn", reason="the back office extras are not installed (pip install '.[dev]')")

from tillvault.backoffice.app import create_app  # noqa: E402
from tillvault.backoffice.store import FleetStore  # noqa: E402
from tillvault.errors import HostUnavailable, InvalidInput  # noqa: E402
from tillvault.sim.report import chromium_args, chromium_path  # noqa: E402
from tillvault.terminal.defaults import DEMO_MERCHANT_QR  # noqa: E402
from tillvault.terminal.fleet import BackofficeSink, check_backoffice_url, health_report, send_health  # noqa: E402
from tillvault.terminal.terminal import Terminal  # noqa: E402

BASE_DSN = "postgresql://postgres@127.0.0.1:5432/test"
TOKEN = "fleet-token-0123456789abcdef"


def _reachable() -> str | None:
    try:
        psycopg.connect(BASE_DSN, connect_timeout=3).close()
        return None
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]


@pytest.fixture
def dsn() -> Iterator[str]:
    """A schema of its own in the local PostgreSQL (dropped afterwards)."""
    why = _reachable()
    if why is not None:
        subprocess.run(
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n1) main start",
            shell=True,
            capture_output=True,
            timeout=60,
        )
        why = _reachable()
    if why is not None:
        print(f"PostgreSQL is not reachable at {BASE_DSN}: {why}")
        pytest.skip(f"PostgreSQL is not reachable at {BASE_DSN} ({why})")
    schema = f"tv_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(BASE_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{BASE_DSN}?options=-csearch_path%3D{schema}"
    with psycopg.connect(BASE_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextlib.contextmanager
def _serve(dsn: str, tls: tuple[Path, Path] | None = None, *, wait_s: float = 5.0) -> Iterator[str]:
    """The back office served by uvicorn on a free local port (https with ``tls``); its base URL."""
    store = FleetStore(dsn, wait_s=wait_s)
    with contextlib.suppress(psycopg.OperationalError):  # (a test of a database that is down)
        store.migrate()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        create_app(store, TOKEN),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the back office did not start"
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


@pytest.fixture
def service(dsn: str) -> Iterator[str]:
    """The back office over plain http on 127.0.0.1 (this machine: allowed); its base URL."""
    with _serve(dsn) as url:
        yield url


def _get(url: str, token: str | None = TOKEN, *, basic: bool = False) -> tuple[int, Any]:
    headers = {}
    if token is not None:
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"fleet:{token}".encode()).decode() if basic else f"Bearer {token}"
        )
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            body = r.read().decode()
            return r.status, json.loads(body) if r.headers.get_content_type() == "application/json" else body
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")


def _post(url: str, body: Any, token: str = TOKEN) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture
def terminals(tmp_path: Path, tmpfs_factory) -> Iterator[list[Terminal]]:  # type: ignore[no-untyped-def]
    """Two terminals: one with room, one on a small real filesystem that another program fills."""
    roomy = Terminal.init(tmp_path / "a", terminal_id="TVFLEET1", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9")
    small = tmpfs_factory("8m")
    tight = Terminal.init(small.path / "b", terminal_id="TVFLEET2", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9")
    small.fill()
    yield [roomy, tight]
    roomy.close()
    tight.close()


def test_terminals_report_and_the_one_about_to_fill_comes_first(
    service: str, terminals: list[Terminal], dsn: str
) -> None:
    roomy, tight = terminals
    sent = [send_health(t, service, TOKEN) for t in (roomy, tight)]
    assert all(s["ok"] and s["stored"] for s in sent)
    assert sent[1]["report"]["pressure"] in ("high", "critical", "exhausted")
    # A retry of the same report is stored once.
    code, again = _post(service + "/api/v1/health", sent[0]["report"])
    assert code == 200 and again == {"ok": True, "stored": False}
    code, fleet = _get(service + "/api/v1/fleet")
    assert code == 200 and [r["terminal_id"] for r in fleet] == ["TVFLEET2", "TVFLEET1"]
    assert fleet[0]["pressure"] == sent[1]["report"]["pressure"] and fleet[1]["pressure"] == "normal"
    assert fleet[1]["capacity_bytes"] == sent[0]["report"]["capacity_bytes"]
    code, history = _get(service + "/api/v1/terminals/TVFLEET1/history")
    assert code == 200 and len(history) == 1
    # Stored by business date, in a month's partition made on first use.
    with psycopg.connect(dsn) as conn:
        parts = [r[0] for r in conn.execute("SELECT inhrelid::regclass::text FROM pg_inherits")]
    assert any(re.fullmatch(r"(\w+\.)?health_reports_\d{4}_\d{2}", p) for p in parts), parts


def test_no_token_no_entry_and_a_bad_report_is_named_and_not_stored(service: str, terminals: list[Terminal]) -> None:
    roomy, _ = terminals
    assert _get(service + "/api/v1/fleet", None)[0] == 401
    assert _get(service + "/api/v1/fleet", "wrong-token-0123456789")[0] == 401
    assert _post(service + "/api/v1/health", health_report(roomy), token="wrong-token-0123456789")[0] == 401
    bad = {**health_report(roomy), "used_bytes": "a lot"}
    code, answer = _post(service + "/api/v1/health", bad)
    assert code == 422 and "'used_bytes'" in answer["detail"]
    naive_time = {**health_report(roomy), "reported_at": "2026-12-01T10:00:00"}
    code, answer = _post(service + "/api/v1/health", naive_time)
    assert code == 422 and "UTC offset" in answer["detail"]
    huge = {**health_report(roomy), "used_bytes": 2**70}  # would overflow bigint: refused, named
    code, answer = _post(service + "/api/v1/health", huge)
    assert code == 422 and "'used_bytes'" in answer["detail"]
    assert _post(service + "/api/v1/health", health_report(roomy))[0] == 200, "the month's partition is sound"
    big = urllib.request.Request(
        service + "/api/v1/terminals/TVFLEET1/segments/seg-TVFLEET1-000001.tvs",
        data=b"x" * (64 * 1024 * 1024 + 1),
        headers={"Authorization": f"Bearer {TOKEN}", "X-Digest": "0" * 64},
        method="PUT",
    )
    with pytest.raises(urllib.error.URLError) as too_big:  # 413 at once, or the rest of the upload cut off
        urllib.request.urlopen(big, timeout=30)
    if isinstance(too_big.value, urllib.error.HTTPError):
        too_big.value.close()
        assert too_big.value.code == 413
    _, fleet = _get(service + "/api/v1/fleet")
    assert [r["terminal_id"] for r in fleet] == ["TVFLEET1"]
    with pytest.raises(Exception, match="refused the report \\(401\\)"):
        send_health(roomy, service, "wrong-token-0123456789")  # named refusal, not a traceback


def test_the_dashboard_renders_in_a_browser_with_the_fleet_at_risk_first(
    service: str, terminals: list[Terminal], tmp_path: Path
) -> None:
    for t in terminals:
        send_health(t, service, TOKEN)
    code, page = _get(service + "/", basic=True)
    assert code == 200 and "<table" in page and not re.search(r'(src|href)="(https?:)?//', page)
    exe = chromium_path()
    if exe is None:
        print("chromium not installed (scripts/setup-test-deps.sh installs it): the browser half is skipped")
        pytest.skip("chromium is not installed (run scripts/setup-test-deps.sh as root)")
    url = service.replace("http://", f"http://fleet:{TOKEN}@") + "/"
    dom = subprocess.run(
        [*chromium_args(exe, tmp_path / "profile"), "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    rows = re.findall(r'<tr class="terminal[^"]*" data-terminal="(\w+)" data-pressure="(\w+)"', dom.stdout)
    assert [r[0] for r in rows] == ["TVFLEET2", "TVFLEET1"]
    assert rows[0][1] in ("high", "critical", "exhausted") and rows[1][1] == "normal"
    assert re.search(r'<span id="at-risk">1</span>', dom.stdout)


def test_the_command_line_reports_and_names_a_refusal(service: str, terminals: list[Terminal]) -> None:
    roomy, _ = terminals
    data = roomy.data_dir
    roomy.close()
    cmd = [sys.executable, "-c", "from tillvault.cli.main import main; main()", "--data", str(data), "report"]
    ok = subprocess.run([*cmd, "--to", service, "--token", TOKEN, "--json"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["stored"] is True
    refused = subprocess.run(
        [*cmd, "--to", service, "--token", "wrong-token-0123456789"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "refused the report (401)" in refused.stderr + refused.stdout
    down = subprocess.run(
        [*cmd, "--to", "http://127.0.0.1:9", "--token", TOKEN], capture_output=True, text=True, timeout=60
    )
    assert down.returncode != 0 and "cannot be reached" in down.stderr + down.stdout


def test_the_back_office_as_the_archive_acknowledges_segments_and_gives_them_back(
    service: str, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tillvault.host.process import start_host_process
    from tillvault.store.archive import file_sha256

    monkeypatch.setenv("TILLVAULT_BACKOFFICE_TOKEN", TOKEN)
    with start_host_process(tmp_path / "host", env={"TILLVAULT_HOST_SECRET": "bo-archive"}) as host:
        t = Terminal.init(
            tmp_path / "t", terminal_id="TVFLEET3", merchant_qr=DEMO_MERCHANT_QR, host=host.address, archive=service
        )
        try:
            invoices = [t.sale(100 + i, "4111111111111111", "3012").invoice for i in range(20)]
            assert t.settle().ok
            sink = t.archive_sink()
            assert sink is not None and sink.name == f"backoffice:{service}"
            assert t.tiers.offload(sink).offloaded == 1
            [seg] = t.tiers.catalogue()
            assert seg["acked_ms"] is not None and seg["sink"] == sink.name
            local = t.tiers.segment_path(seg["name"])
            with psycopg.connect(dsn) as conn:
                held = conn.execute(
                    "SELECT digest, data FROM segments WHERE terminal_id = 'TVFLEET3' AND name = %s", (seg["name"],)
                ).fetchone()
            assert held[0] == seg["digest"] and bytes(held[1]) == local.read_bytes()
            assert t.scrub()["archive"] == {"configured": True, "reachable": True, "checked": 1, "other_sink": 0}
            # Evicted only because the back office holds it; fetched back verified when needed.
            assert t.tiers.evict(sink, keep_days=0, now_ms=t.now_ms() + 1).evicted == 1
            assert not local.exists()
            # An evicted sale is read from the back office's copy in memory (a refund, a reprint).
            assert t.find_transaction(invoices[5])["amount"] == 105
            assert not local.exists(), "nothing written to the terminal's disk"
            t.tiers.fetch(sink, seg["name"])
            assert file_sha256(local) == seg["digest"]
            assert t.find_transaction(invoices[3])["amount"] == 103
            # The back office's copy rots: scrub finds it and sends it again from the terminal's copy.
            with psycopg.connect(dsn) as conn:
                conn.execute("UPDATE segments SET data = overlay(data placing '\\x00' from 100 for 1)")
            report = t.scrub()
            assert report["ok"], report["problems"]
            assert [(r["device"], r["what"]) for r in report["repaired"]] == [("archive", seg["name"])]
            assert sink.has(seg["name"], seg["digest"]), "the back office holds a good copy again"
            # A segment sent with a digest that does not match its bytes is refused, never stored.
            bad = urllib.request.Request(
                f"{service}/api/v1/terminals/TVFLEET3/segments/seg-TVFLEET3-000099.tvs",
                data=b"not what the digest says",
                headers={"Authorization": f"Bearer {TOKEN}", "X-Digest": "0" * 64},
                method="PUT",
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(bad, timeout=10)
            refused.value.close()
            assert refused.value.code == 422
            # Without the fleet token the back office is "not reachable", and nothing is evicted.
            monkeypatch.delenv("TILLVAULT_BACKOFFICE_TOKEN")
            assert t.scrub()["archive"]["reachable"] is False
        finally:
            t.close()


def test_old_months_of_reports_are_dropped_whole_and_the_fleet_stays(
    service: str, terminals: list[Terminal], dsn: str
) -> None:
    roomy, _ = terminals
    old = {**health_report(roomy), "business_date": "2024-01-15", "reported_at": "2024-01-15T12:00:00+08:00"}
    assert _post(service + "/api/v1/health", old)[1]["stored"] is True
    assert _post(service + "/api/v1/health", health_report(roomy))[1]["stored"] is True
    store = FleetStore(dsn)
    assert store.purge(keep_months=13) == ["health_reports_2024_01"]
    assert store.purge(keep_months=13) == []
    [latest] = store.fleet()
    assert (
        latest["terminal_id"] == "TVFLEET1"
        and latest["business_date"].isoformat() == health_report(roomy)["business_date"]
    )
    assert len(store.history("TVFLEET1", days=3660)) == 1, "the old month is gone, this month is whole"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8600",
        "http://localhost:8600/",
        "http://[::1]:8600",
        "https://bo.example.com",
        "https://10.0.0.5",
    ],
)
def test_https_anywhere_plain_http_to_this_machine_only(url: str) -> None:
    assert check_backoffice_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.0.0.5:8600", "in clear"),
        ("http://bo.example.com", "in clear"),
        ("ftp://127.0.0.1/x", "must be https"),
        ("https://", "must be https"),
        ("http://127.0.0.1:99999", "not valid"),
        ("http://evil.example@127.0.0.1:8600", "user or password"),
        ("https://user:pw@bo.example.com", "user or password"),
    ],
)
def test_a_url_that_would_send_the_token_in_clear_is_refused_by_name(url: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        check_backoffice_url(url)


def test_plain_http_across_the_network_sends_nothing_and_evicts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TILLVAULT_BACKOFFICE_TOKEN", TOKEN)
    with pytest.raises(InvalidInput, match="in clear"):
        Terminal.init(
            tmp_path / "t", terminal_id="TVFLEET4", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9",
            archive="http://192.0.2.10:8600",
        )  # fmt: skip
    assert not (tmp_path / "t").exists(), "refused before anything was created"
    t = Terminal.init(tmp_path / "t", terminal_id="TVFLEET4", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9")
    try:
        began = time.monotonic()
        with pytest.raises(InvalidInput, match="in clear"):
            send_health(t, "http://192.0.2.10:8600", TOKEN)
        # A configuration edited by hand to such a URL: the archive is unreachable, with the reason.
        t.config.archive = "http://192.0.2.10:8600"
        sink = t.archive_sink()
        assert isinstance(sink, BackofficeSink) and not sink.reachable()
        assert time.monotonic() - began < 2, "refused without trying the network"
        assert t.scrub()["archive"]["reachable"] is False
    finally:
        t.close()


def test_the_back_office_over_tls_with_a_private_ca(
    dsn: str, tmp_path: Path, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tillvault.host.process import start_host_process

    cert, _ = tls_files
    monkeypatch.setenv("TILLVAULT_BACKOFFICE_TOKEN", TOKEN)
    with (
        _serve(dsn, tls_files) as url,
        start_host_process(tmp_path / "host", env={"TILLVAULT_HOST_SECRET": "bo-tls"}) as host,
    ):
        assert url.startswith("https://")
        t = Terminal.init(
            tmp_path / "t", terminal_id="TVFLEET5", merchant_qr=DEMO_MERCHANT_QR, host=host.address,
            archive=url, archive_tls_ca=cert,
        )  # fmt: skip
        stranger = Terminal.init(
            tmp_path / "s", terminal_id="TVFLEET6", merchant_qr=DEMO_MERCHANT_QR, host=host.address, archive=url
        )  # no CA: the back office's certificate is not trusted
        try:
            assert t.config.archive_tls_ca == str(cert.resolve())
            for term in (t, stranger):
                assert all(term.sale(100 + i, "4111111111111111", "3012").ok for i in range(5))
                assert term.settle().ok
            assert t.tiers.offload(t.archive_sink()).offloaded == 1
            [seg] = t.tiers.catalogue()
            assert seg["acked_ms"] is not None, "acknowledged over https"
            assert send_health(t, url, TOKEN)["stored"] is True  # the terminal's CA by default
            untrusted = stranger.archive_sink()
            assert not untrusted.reachable()
            assert stranger.tiers.offload(untrusted).offloaded == 0
            assert stranger.tiers.evict(untrusted, keep_days=0, now_ms=stranger.now_ms() + 1).evicted == 0
            with pytest.raises(HostUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                send_health(stranger, url, TOKEN)
        finally:
            t.close()
            stranger.close()
    with pytest.raises(InvalidInput, match="--archive-ca"):
        Terminal.init(
            tmp_path / "u", terminal_id="TVFLEET7", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9",
            archive="https://127.0.0.1:1", archive_tls_ca=tmp_path / "missing.pem",
        )  # fmt: skip


def test_the_back_office_serves_plain_http_on_this_machine_only(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cmd = [sys.executable, "-c", "from tillvault.cli.main import main; main()", "backoffice", "serve"]
    dsn = ["--dsn", "postgresql://nobody@127.0.0.1:1/none", "--token", TOKEN]
    open_lan = subprocess.run([*cmd, *dsn, "--listen", "0.0.0.0:8600"], capture_output=True, text=True, timeout=60)
    assert open_lan.returncode == 2 and "in clear" in open_lan.stderr + open_lan.stdout
    half = subprocess.run(
        [*cmd, *dsn, "--listen", "0.0.0.0:8600", "--tls-cert", str(tls_files[0])], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert half.returncode == 2 and "--tls-cert and --tls-key go together" in half.stderr + half.stdout
    swapped = subprocess.run(
        [*cmd, *dsn, "--listen", "0.0.0.0:8600", "--tls-cert", str(tls_files[1]), "--tls-key", str(tls_files[0])],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert swapped.returncode == 2 and "TLS cannot load them" in swapped.stderr + swapped.stdout


def _put_segment(service: str, terminal_id: str, name: str, data: bytes, token: str) -> int:
    import hashlib

    request = urllib.request.Request(
        f"{service}/api/v1/terminals/{terminal_id}/segments/{name}",
        data=data,
        headers={"Authorization": f"Bearer {token}", "X-Digest": hashlib.sha256(data).hexdigest()},
        method="PUT",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code)


def test_a_terminal_token_opens_that_terminal_only(service: str, dsn: str, terminals: list[Terminal]) -> None:
    store = FleetStore(dsn)
    roomy, tight = terminals
    mine, theirs = store.enrol("TVFLEET1"), store.enrol("TVFLEET2")
    assert mine.startswith("tvt_") and mine != theirs
    assert _post(service + "/api/v1/health", health_report(roomy), token=mine) == (200, {"ok": True, "stored": True})
    code, body = _post(service + "/api/v1/health", health_report(tight), token=mine)
    assert code == 403 and "TVFLEET1" in body["detail"], "a report in another terminal's name"
    for path, basic in (("/api/v1/fleet", False), ("/api/v1/terminals/TVFLEET2/history", False), ("/", True)):
        assert _get(service + path, mine, basic=basic)[0] == 403, path
    segment = "/api/v1/terminals/{}/segments/seg-{}-000001.tvs"
    assert _put_segment(service, "TVFLEET1", "seg-TVFLEET1-000001.tvs", b"sealed bytes", mine) == 200
    assert _get(service + segment.format("TVFLEET1", "TVFLEET1") + "?meta=true", mine)[0] == 200
    assert _put_segment(service, "TVFLEET2", "seg-TVFLEET2-000001.tvs", b"overwrite", mine) == 403
    assert _get(service + segment.format("TVFLEET2", "TVFLEET2") + "?meta=true", mine)[0] == 403
    assert _get(service + "/api/v1/fleet")[0] == 200, "the fleet token still opens everything"
    # Enrolled again: the old token stops at once; revoked: nothing opens; a made-up one neither.
    again = store.enrol("TVFLEET1")
    assert _post(service + "/api/v1/health", health_report(roomy), token=mine)[0] == 401
    assert _post(service + "/api/v1/health", health_report(roomy), token=again)[0] == 200
    assert store.revoke("TVFLEET1") and not store.revoke("TVFLEET1")
    assert _post(service + "/api/v1/health", health_report(roomy), token=again)[0] == 401
    assert _get(service + "/api/v1/fleet", "tvt_" + "A" * 43)[0] == 401
    with pytest.raises(InvalidInput, match="not a terminal id"):
        store.enrol("no/slashes/here")


def test_enrol_and_revoke_from_the_command_line(service: str, dsn: str) -> None:
    cmd = [sys.executable, "-c", "from tillvault.cli.main import main; main()", "backoffice"]
    enrolled = subprocess.run(
        [*cmd, "enrol", "TVFLEET9", "--dsn", dsn, "--json"], capture_output=True, text=True, timeout=60
    )
    assert enrolled.returncode == 0, enrolled.stderr
    token = json.loads(enrolled.stdout)["token"]
    assert BackofficeSink(service, "TVFLEET9", token).reachable()
    assert not BackofficeSink(service, "TVFLEET8", token).reachable(), "another terminal's archive"
    revoked = subprocess.run([*cmd, "revoke", "TVFLEET9", "--dsn", dsn], capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0 and "token revoked" in revoked.stdout
    assert not BackofficeSink(service, "TVFLEET9", token).reachable()
    for bad in (
        "postgresql://someone:secret@127.0.0.1:1/none",
        "postgresql://someone@127.0.0.1:1/none?password=secret",
        "host=127.0.0.1 port=1 user=someone password=secret dbname=none",
    ):
        down = subprocess.run([*cmd, "enrol", "TVFLEET9", "--dsn", bad], capture_output=True, text=True, timeout=60)
        said = down.stderr + down.stdout
        assert down.returncode == 2 and "cannot use PostgreSQL at someone@127.0.0.1:1/none" in said, said
        assert "secret" not in said, "the password is never printed"


def test_two_enrolments_at_once_leave_one_token(dsn: str) -> None:
    store = FleetStore(dsn)
    store.migrate()
    for _ in range(5):
        tokens: list[str] = []
        threads = [threading.Thread(target=lambda out=tokens: out.append(store.enrol("TVRACE01"))) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(store.terminal_for_token(tok) is not None for tok in tokens) == [False, True]


def test_requests_reuse_pooled_connections_and_survive_a_dropped_one(dsn: str) -> None:
    """One connection serves request after request; one killed by PostgreSQL is replaced, not an error."""
    with FleetStore(dsn) as store:
        store.migrate()
        pids = []
        for _ in range(10):
            with store.connect() as conn:
                pids.append(conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"])
        assert len(set(pids)) <= 2, "before: a new connection (5 ms here) for every request"
        with psycopg.connect(BASE_DSN, autocommit=True) as admin:  # PostgreSQL restarts, say
            admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (list(set(pids)),))
        assert store.fleet() == []
        with store.connect() as conn:
            again = conn.execute(
                "SELECT pg_backend_pid() AS pid, current_setting('application_name') AS app"
            ).fetchone()
        assert again["pid"] not in pids and again["app"] == "tillvault-backoffice"
        # A failed request rolls back and gives its connection back in working order.
        with pytest.raises(psycopg.errors.UndefinedTable), store.connect() as conn:
            conn.execute("SELECT * FROM no_such_table")
        assert store.fleet() == []
    deadline = time.monotonic() + 10  # the server process ends a moment after the client closes
    with psycopg.connect(BASE_DSN, autocommit=True) as admin:
        while True:
            row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (again["pid"],)).fetchone()
            if row is None or row[0] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert row is not None and row[0] == 0, "close() closed the pooled connections"


def test_no_proxy_sees_the_token_and_a_bad_ca_file_is_named(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tillvault.store.archive import ArchiveUnavailable
    from tillvault.terminal import fleet

    seen: list[bytes] = []
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen()
    proxy.settimeout(5)

    def accept() -> None:
        with contextlib.suppress(OSError):
            conn, _ = proxy.accept()
            with conn:
                seen.append(conn.recv(4096))

    waiter = threading.Thread(target=accept, daemon=True)
    waiter.start()
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.getsockname()[1]}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    fleet._opener.cache_clear()
    try:
        assert BackofficeSink(service, "TVFLEET1", TOKEN).reachable(), "straight to the back office"
        missing = BackofficeSink(service, "TVFLEET1", TOKEN, ca=str(tmp_path / "gone.pem"))
        assert not missing.reachable()
        with pytest.raises(ArchiveUnavailable, match=r"gone\.pem"):
            missing._request("GET", "seg-probe-000000.tvs")
    finally:
        proxy.close()
        waiter.join(timeout=6)
        fleet._opener.cache_clear()
    assert seen == [], "the http proxy never saw a request (nor the token)"


def test_a_whole_fleet_reporting_at_once_in_a_new_month_loses_no_report(dsn: str, terminals: list[Terminal]) -> None:
    # Just after midnight on the 1st every terminal makes the month's partition at the same moment.
    store = FleetStore(dsn, pool_size=16)
    store.migrate()
    base = health_report(terminals[0])
    errors: list[BaseException] = []
    stored: list[bool] = []

    def send(i: int) -> None:
        try:
            stored.append(store.ingest({**base, "terminal_id": f"TVRUSH{i:02d}"}))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.close()
    assert errors == [] and stored == [True] * 16


def test_a_report_from_the_future_a_replay_or_a_skewed_clock_cannot_hide_a_terminal(
    service: str, terminals: list[Terminal]
) -> None:
    from datetime import UTC, datetime, timedelta

    roomy, _ = terminals
    now = datetime.now(UTC)
    report = {**health_report(roomy), "merchant": "New Name Ltd"}
    future = {**report, "reported_at": "2999-12-31T00:00:00+00:00", "business_date": "2999-12-31"}
    code, answer = _post(service + "/api/v1/health", future)
    assert code == 422 and "in the future" in answer["detail"]
    # A clock seven hours behind: its reports are live, not "silent".
    behind = now - timedelta(hours=7)
    skewed = {**report, "reported_at": behind.isoformat(), "business_date": behind.date().isoformat()}
    assert _post(service + "/api/v1/health", skewed)[0] == 200
    # An old report replayed later, and one without the merchant, leave the newest name.
    old = now - timedelta(days=1)
    replay = {**report, "merchant": "Old Name Ltd", "reported_at": old.isoformat()}
    replay["business_date"] = old.date().isoformat()
    assert _post(service + "/api/v1/health", replay)[0] == 200
    assert _post(service + "/api/v1/health", {k: v for k, v in skewed.items() if k != "merchant"})[0] == 200
    _, fleet = _get(service + "/api/v1/fleet")
    row = next(r for r in fleet if r["terminal_id"] == roomy.config.terminal_id)
    assert row["merchant"] == "New Name Ltd" and row["silent"] is False


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"terminal_id": "T\u0000X"}, "'terminal_id'"),
        ({"merchant": "Kedai\u0000"}, "'merchant' contains the control character U+0000"),
        ({"alerts": 5}, "'alerts' must be a list"),
        ({"alerts": [{"message": "a\u0000b"}]}, "'alerts[0].message'"),
        ({"runway_days": -5}, "'runway_days'"),
        ({"runway_days": -0.5}, "'runway_days'"),
        ({"free_bytes": 2**62}, "'free_bytes'"),
    ],
)
def test_a_malformed_report_is_refused_naming_the_field_never_a_server_error(
    service: str, terminals: list[Terminal], change: dict[str, Any], named: str
) -> None:
    code, answer = _post(service + "/api/v1/health", {**health_report(terminals[0]), **change})
    assert code == 422 and named in answer["detail"], answer


def test_nan_infinite_or_deep_json_and_absurd_history_are_refused_not_a_500(
    service: str, terminals: list[Terminal]
) -> None:
    body = json.dumps(health_report(terminals[0]))
    for raw, expected in (
        (body[:-1] + ', "runway_days": NaN}', 422),
        (body[:-1] + ', "runway_days": 1e400}', 422),
        ("[" * 60000, 400),
    ):
        request = urllib.request.Request(
            service + "/api/v1/health",
            data=raw.encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        refused.value.close()
        assert refused.value.code == expected, raw[:80]
    for days in ("100000000", "99999999999999999999", "0"):
        assert _get(service + f"/api/v1/terminals/TVFLEET1/history?days={days}")[0] == 422


def test_a_big_disk_growing_slowly_reports_a_runway_of_millions_of_days(
    service: str, terminals: list[Terminal]
) -> None:
    code, answer = _post(service + "/api/v1/health", {**health_report(terminals[0]), "runway_days": 2_500_000.0})
    assert code == 200 and answer["stored"] is True


def test_the_fleet_api_pages_most_at_risk_first(service: str, terminals: list[Terminal]) -> None:
    base = health_report(terminals[0])
    for i, pressure in enumerate(["normal", "critical", "watch"]):
        report = {**base, "terminal_id": f"TVPAGE{i:02d}", "pressure": pressure}
        assert _post(service + "/api/v1/health", report)[0] == 200
    request = urllib.request.Request(service + "/api/v1/fleet?limit=2", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        first, total = json.loads(r.read()), r.headers["X-Total-Count"]
    assert total == "3" and [x["pressure"] for x in first] == ["critical", "watch"]
    _, rest = _get(service + "/api/v1/fleet?limit=2&offset=2")
    assert [x["pressure"] for x in rest] == ["normal"]
    assert _get(service + "/api/v1/fleet?limit=0")[0] == 422


def test_a_database_that_is_down_is_a_503_and_the_terminal_keeps_its_report_for_later(
    terminals: list[Terminal],
) -> None:
    with socket.socket() as s:  # a port where no PostgreSQL listens
        s.bind(("127.0.0.1", 0))
        dead = f"postgresql://postgres@127.0.0.1:{s.getsockname()[1]}/test"
    with _serve(dead, wait_s=1.0) as url:
        code, answer = _post(url + "/api/v1/health", health_report(terminals[0]))
        assert code == 503 and "database cannot be reached" in answer["detail"]
        with pytest.raises(HostUnavailable, match="cannot take reports now \\(503\\)"):
            send_health(terminals[0], url, TOKEN)

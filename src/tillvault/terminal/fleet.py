"""The terminal's side of the fleet back office: its storage health, sent as one small report.

What is sent: sizes, pressure, runway, counts and device alerts; no card data, no customer data.
The report names its instant and business date, so a retry is stored once by the back office.

Every request carries the fleet token, so the back office is reached over TLS (its certificate
checked against the system's CAs, or a private CA given as ``ca``); plain http is for a back
office on this very machine only (127.0.0.1, ::1, localhost): anywhere else the token would
cross the network in clear.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tillvault.errors import HostUnavailable, InvalidInput
from tillvault.host.wire import client_ssl_context

if TYPE_CHECKING:
    from tillvault.terminal.terminal import Terminal


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following one would hand the fleet token to another server."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def check_backoffice_url(url: str) -> str:
    """``url`` without its trailing slash, once it is an https URL, or http to this machine.

    :raises InvalidInput: another scheme, no host, or plain http across the network.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        raise InvalidInput(f"the back office URL {url!r} is not valid: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidInput(f"the back office URL must be https://HOST[:PORT], got {url!r}")
    if "@" in parts.netloc or "\\" in parts.netloc:
        raise InvalidInput(f"the back office URL must not carry a user or password before its host, got {url!r}")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise InvalidInput(
            f"the back office at {url} would get the fleet token in clear across the network: use https:// "
            "(serve it with --tls-cert and --tls-key; a private CA goes to terminals with --archive-ca or "
            "--ca); plain http is for a back office on this machine only (127.0.0.1, ::1, localhost)"
        )
    return url.rstrip("/")


def is_loopback_host(host: str) -> bool:
    """True for this machine's own names: localhost and loopback addresses (IPv4 or IPv6)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_ca_file(path: str | Path, option: str) -> str:
    """The absolute path of a PEM CA certificate file that TLS can load.

    :raises InvalidInput: naming ``option`` and why the file cannot serve.
    """
    try:
        client_ssl_context(path)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInput(f"{option} {path}: not a readable PEM CA certificate ({exc})") from None
    return str(Path(path).resolve())


@functools.lru_cache(maxsize=8)
def _opener(ca: str | None) -> urllib.request.OpenerDirector:
    """Redirects refused; TLS checked against ``ca`` (a PEM file) or else the system's CAs; an
    ``http_proxy`` never used (it would see the token: only an https proxy, which tunnels TLS).

    :raises OSError: ``ca`` cannot be read or is not a CA certificate (``ssl.SSLError`` is one).
    """
    context = client_ssl_context(ca)
    proxies = {k: v for k, v in urllib.request.getproxies().items() if k == "https"}
    return urllib.request.build_opener(
        _NoRedirect, urllib.request.ProxyHandler(proxies), urllib.request.HTTPSHandler(context=context)
    )


def _checked_opener(ca: object) -> urllib.request.OpenerDirector:
    """:func:`_opener`, with a CA that cannot serve named.

    :raises InvalidInput: ``ca`` is not a path to a readable PEM CA certificate.
    """
    try:
        if ca is not None and not isinstance(ca, str):
            raise TypeError(f"a path is needed, not {type(ca).__name__}")
        return _opener(ca)
    except (OSError, TypeError, ValueError) as exc:
        raise InvalidInput(f"the back office's CA certificate {ca!r} cannot be used: {exc}") from None


#: After the back office failed to answer, calls fail fast for this long (a sale waits on none).
BACKOFF_S = 30.0

FIELDS = (
    "terminal_id",
    "merchant",
    "capacity_bytes",
    "used_bytes",
    "free_bytes",
    "reserve_bytes",
    "sales_possible",
    "pressure",
    "runway_days",
    "open_batch_count",
    "outbox_pending",
    "pending_intents",
)


def health_report(t: Terminal) -> dict[str, Any]:
    """This terminal's health now, as the back office takes it."""
    status = t.status()
    report = {k: status.get(k) for k in FIELDS}
    report["reported_at"] = t.now().astimezone().isoformat(timespec="milliseconds")
    report["business_date"] = t.business_date()
    report["alerts"] = [{k: a.get(k) for k in ("device", "state", "message")} for a in status.get("alerts") or []]
    return report


def send_health(t: Terminal, url: str, token: str, *, ca: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """Send the health report to the back office at ``url``; returns its answer.

    ``ca``: a PEM CA certificate the back office's TLS certificate must chain to (default: the
    terminal's ``archive_tls_ca``, else the system's CAs).

    :raises InvalidInput: a URL that would send the token in clear, a bad CA file, or the back
        office refused the report or the token.
    :raises HostUnavailable: the back office cannot be reached.
    """
    url = check_backoffice_url(url)
    opener = _checked_opener(check_ca_file(ca, "--ca") if ca else t.config.archive_tls_ca)
    report = health_report(t)
    request = urllib.request.Request(
        url.rstrip("/") + "/api/v1/health",
        data=json.dumps(report).encode("utf-8"),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
        if exc.code >= 500:  # its own trouble (its database down): the report is good, send it later
            raise HostUnavailable(f"the back office at {url} cannot take reports now ({exc.code}): {detail}") from None
        raise InvalidInput(f"the back office refused the report ({exc.code}): {detail}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise HostUnavailable(f"the back office at {url} cannot be reached or did not answer: {exc}") from None
    if not isinstance(answer, dict):
        raise HostUnavailable(f"the back office at {url} gave an answer that is not TillVault's")
    return {**answer, "report": report}


class BackofficeSink:
    """The back office as the archive of sealed segments (``init --archive http://...``).

    ``put`` returns only once the back office has committed the segment and echoed its digest:
    that is the acknowledgement after which the terminal may evict its own copy. The fleet token
    comes from ``TILLVAULT_BACKOFFICE_TOKEN`` (never from the data folder); ``ca`` is the PEM CA
    certificate of a back office with a private CA. A URL that would send the token in clear
    (http across the network) makes the archive unreachable, with the reason: nothing is sent
    and nothing is evicted.
    """

    def __init__(
        self, url: str, terminal_id: str, token: str | None, *, ca: str | None = None, timeout: float = 10.0
    ) -> None:
        self.url = url.rstrip("/")
        self.terminal_id = terminal_id
        self.token = token
        self.ca = ca
        self.timeout = timeout
        self.name = f"backoffice:{self.url}"
        self._down_until = 0.0
        try:
            check_backoffice_url(url)
            self._refusal = ""
        except InvalidInput as exc:
            self._refusal = str(exc)

    def _request(
        self,
        method: str,
        name: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        query: str = "",
    ) -> tuple[int, bytes, dict[str, str]]:
        from tillvault.store.archive import ArchiveUnavailable

        if self._refusal:
            raise ArchiveUnavailable(self._refusal)
        if not self.token:
            raise ArchiveUnavailable("the back office archive needs the fleet token: set TILLVAULT_BACKOFFICE_TOKEN")
        url = f"{self.url}/api/v1/terminals/{urllib.parse.quote(self.terminal_id)}/segments/{urllib.parse.quote(name)}"
        request = urllib.request.Request(
            url + query,
            data=data,
            headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
            method=method,
        )
        if time.monotonic() < self._down_until:
            raise ArchiveUnavailable(f"the back office at {self.url} did not answer a moment ago")
        try:
            opener = _checked_opener(self.ca)
        except InvalidInput as exc:
            raise ArchiveUnavailable(str(exc)) from None
        try:
            with opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            with exc:
                if 300 <= exc.code < 400:
                    raise ArchiveUnavailable(f"the back office at {self.url} redirects elsewhere: refused") from None
                return exc.code, exc.read(), dict(exc.headers or {})
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            self._down_until = time.monotonic() + BACKOFF_S
            raise ArchiveUnavailable(f"the back office at {self.url} cannot be reached: {exc}") from None

    @staticmethod
    def _json(body: bytes) -> dict[str, Any]:
        from tillvault.store.archive import ArchiveUnavailable

        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ArchiveUnavailable("the back office gave an answer that is not TillVault's")
        return answer

    def reachable(self) -> bool:
        """True when the back office answers (a segment it does not hold is a 404, an answer too)."""
        from tillvault.store.archive import ArchiveUnavailable

        try:
            status, body, _ = self._request("GET", "seg-probe-000000.tvs", query="?meta=true")
            if status == 404:  # the back office's own "not held" (another server's 404 is not)
                return "detail" in self._json(body)
        except ArchiveUnavailable:
            return False
        return status == 200

    def put(self, path: Path, digest: str) -> None:
        """Send the segment; return once the back office acknowledged it durably.

        :raises ArchiveUnavailable: unreachable, refused, or the acknowledgement does not match.
        """
        from tillvault.store.archive import ArchiveUnavailable

        data = Path(path).read_bytes()
        status, body, _ = self._request(
            "PUT", Path(path).name, data=data, headers={"X-Digest": digest, "Content-Type": "application/octet-stream"}
        )
        if status != 200:
            raise ArchiveUnavailable(f"the back office refused segment {Path(path).name} ({status}): {body[:200]!r}")
        answer = self._json(body)
        if answer.get("digest") != digest or not self.has(Path(path).name, digest):
            raise ArchiveUnavailable(f"the back office's acknowledgement of {Path(path).name} does not match")

    def has(self, name: str, digest: str) -> bool:
        """True when the back office holds ``name`` with that digest, intact."""
        from tillvault.store.archive import ArchiveUnavailable

        try:
            status, body, _ = self._request("GET", name, query="?meta=true")
        except ArchiveUnavailable:
            return False
        if status != 200:
            return False
        try:
            meta = self._json(body)
        except ArchiveUnavailable:
            return False
        return bool(meta.get("digest") == digest and meta.get("intact"))

    def read(self, name: str, digest: str) -> bytes:
        """The segment's bytes, verified against ``digest``, in memory (nothing written locally).

        :raises ArchiveUnavailable: unreachable, not held, or the bytes do not match.
        """
        import hashlib

        from tillvault.store.archive import ArchiveUnavailable

        status, body, _ = self._request("GET", name)
        if status != 200:
            raise ArchiveUnavailable(f"the back office does not hold segment {name} ({status})")
        if hashlib.sha256(body).hexdigest() != digest:
            raise ArchiveUnavailable(f"the back office's copy of {name} does not match its digest")
        return body

    def fetch(self, name: str, dest: Path, digest: str) -> Path:
        """Bring ``name`` back to ``dest``, verified (temp file, fsync, rename).

        :raises ArchiveUnavailable: unreachable, not held, or the bytes do not match.
        """
        from tillvault.store.fsutil import write_atomic

        body = self.read(name, digest)
        write_atomic(dest, body, mode=0o600)
        return Path(dest)

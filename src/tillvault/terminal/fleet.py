"""The terminal's side of the fleet back office: its storage health, sent as one small report.

What is sent: sizes, pressure, runway, counts and device alerts; no card data, no customer data.
The report names its instant and business date, so a retry is stored once by the back office.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from tillvault.errors import HostUnavailable, InvalidInput

if TYPE_CHECKING:
    from tillvault.terminal.terminal import Terminal

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


def send_health(t: Terminal, url: str, token: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """Send the health report to the back office at ``url``; returns its answer.

    :raises InvalidInput: the back office refused the report or the token.
    :raises HostUnavailable: the back office cannot be reached.
    """
    report = health_report(t)
    request = urllib.request.Request(
        url.rstrip("/") + "/api/v1/health",
        data=json.dumps(report).encode("utf-8"),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise InvalidInput(f"the back office refused the report ({exc.code}): {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise HostUnavailable(f"the back office at {url} cannot be reached: {exc}") from None
    return {**answer, "report": report}

"""The back office's HTTP service (FastAPI): health ingestion, the fleet as JSON, the dashboard.

Every request needs a token, as ``Authorization: Bearer <token>`` (terminals, scripts) or HTTP
Basic with the token as password (a browser on the dashboard). The fleet token (compared in
constant time) opens everything. A terminal's own token (``tillvault backoffice enrol``) opens
only that terminal's health reports and segments: anything else is refused (403). No card data
ever reaches the back office: a health report holds sizes, pressure, runway, counts and device
alerts, and a segment is encrypted with a key the back office never sees.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from psycopg_pool import PoolTimeout

from tillvault.backoffice.store import SEGMENT_NAME, TERMINAL_TOKEN, FleetStore
from tillvault.errors import InvalidInput

TEMPLATES = Path(__file__).parent / "templates"
#: The largest health report and sealed segment taken (a segment holds one batch: well under this).
MAX_REPORT_BYTES = 64 * 1024
MAX_SEGMENT_BYTES = 64 * 1024 * 1024
#: Terminals on the dashboard (most at risk first) and the largest page of the fleet API.
DASHBOARD_ROWS = 500
MAX_FLEET_PAGE = 10_000


def _given_token(request: Request) -> str:
    """The token the request carries (Bearer, or Basic's password), or ""."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


def _terminal_route(request: Request) -> bool:
    """True for what a terminal's own token may ask for: send its health, keep and read its segments."""
    path = request.url.path
    if path == "/api/v1/health":
        return request.method == "POST"
    parts = path.split("/")
    return len(parts) == 7 and parts[1:4] == ["api", "v1", "terminals"] and parts[5] == "segments"


def _may(request: Request, terminal_id: object) -> None:
    """Refuse (403) a terminal's token reaching another terminal's data."""
    own = getattr(request.state, "terminal", None)
    if own is not None and own != terminal_id:
        raise HTTPException(status_code=403, detail=f"terminal {own}'s token opens no other terminal's data")


def create_app(store: FleetStore, token: str) -> FastAPI:
    """The service over ``store``, guarded by ``token``."""
    if len(token) < 16:
        raise InvalidInput("the fleet token must be at least 16 characters")
    app = FastAPI(title="TillVault back office", docs_url=None, redoc_url=None, openapi_url=None)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        given = _given_token(request)
        request.state.terminal = None
        if given and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
            return await call_next(request)  # the fleet token: everything
        try:
            terminal = (
                await run_in_threadpool(store.terminal_for_token, given) if TERMINAL_TOKEN.fullmatch(given) else None
            )
        except (PoolTimeout, psycopg.OperationalError):
            return _database_down()
        if terminal is None:
            return JSONResponse(
                {"error": "the token is missing or wrong (the fleet token, or a terminal's own)"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="TillVault back office"'},
            )
        if not _terminal_route(request):
            return JSONResponse(
                {"error": f"terminal {terminal}'s token opens only its health reports and segments"},
                status_code=403,
            )
        request.state.terminal = terminal
        return await call_next(request)

    @app.post("/api/v1/health")
    async def health(request: Request) -> dict[str, Any]:
        body = await _bounded_body(request, MAX_REPORT_BYTES)
        try:
            report = json.loads(body)
        except (ValueError, RecursionError):
            raise HTTPException(status_code=400, detail="the body is not JSON (or is nested too deep)") from None
        _may(request, report.get("terminal_id") if isinstance(report, dict) else None)
        try:  # PostgreSQL is called off the event loop: a slow database stalls this request only
            stored = await run_in_threadpool(store.ingest, report)
        except InvalidInput as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return {"ok": True, "stored": stored}

    @app.put("/api/v1/terminals/{terminal_id}/segments/{name}")
    async def put_segment(terminal_id: str, name: str, request: Request) -> dict[str, Any]:
        if not SEGMENT_NAME.fullmatch(name):  # refused before a byte of the body is read
            raise HTTPException(status_code=422, detail=f"{name!r} is not a segment file name")
        _may(request, terminal_id)
        digest = request.headers.get("x-digest", "").strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise HTTPException(status_code=422, detail="the X-Digest header (the segment's SHA-256, hex) is missing")
        data = await _bounded_body(request, MAX_SEGMENT_BYTES)
        try:
            stored = await run_in_threadpool(store.put_segment, terminal_id, name, digest, data)
        except InvalidInput as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        except FileExistsError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        return {"ok": True, "stored": stored, "name": name, "digest": digest}

    @app.get("/api/v1/terminals/{terminal_id}/segments/{name}")
    def get_segment(terminal_id: str, name: str, request: Request, meta: bool = False) -> Any:
        _may(request, terminal_id)
        held = store.segment(terminal_id, name, with_data=not meta)
        if held is None:
            raise HTTPException(status_code=404, detail=f"no segment {name} of {terminal_id} here")
        if meta:
            return {"name": name, "digest": held["digest"], "bytes": held["bytes"], "intact": held["intact"]}
        return Response(
            content=bytes(held["data"]), media_type="application/octet-stream", headers={"X-Digest": held["digest"]}
        )

    @app.get("/api/v1/fleet")
    def fleet(response: Response, limit: int = MAX_FLEET_PAGE, offset: int = 0) -> list[dict[str, Any]]:
        if not 1 <= limit <= MAX_FLEET_PAGE or offset < 0:
            raise HTTPException(status_code=422, detail=f"limit must be 1 to {MAX_FLEET_PAGE:,} and offset 0 or more")
        rows = store.fleet()
        response.headers["X-Total-Count"] = str(len(rows))  # most at risk first: page on with offset
        return [_jsonable(r) for r in rows[offset : offset + limit]]

    @app.get("/api/v1/terminals/{terminal_id}/history")
    def history(terminal_id: str, days: int = 30) -> list[dict[str, Any]]:
        try:
            return [_jsonable(r) for r in store.history(terminal_id, days=days)]
        except InvalidInput as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None

    @app.get("/", response_class=HTMLResponse)
    def dashboard() -> str:
        now = datetime.now(UTC)
        rows = store.fleet(now=now)
        at_risk = [r for r in rows if r["pressure"] in ("high", "critical", "exhausted") or r["silent"]]
        return env.get_template("dashboard.html").render(
            rows=rows, shown=DASHBOARD_ROWS, at_risk=len(at_risk), now=now, mib=1024 * 1024
        )

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(psycopg.OperationalError)
    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        return _database_down()

    return app


def _database_down() -> JSONResponse:
    """503: not the request's fault; the terminal keeps its report and sends it again later."""
    return JSONResponse(
        {"detail": "the back office's database cannot be reached now; try again later"},
        status_code=503,
        headers={"Retry-After": "60"},
    )


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) past ``limit`` bytes, declared or streamed."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(status_code=413, detail=f"the body is over {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status_code=413, detail=f"the body is over {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}

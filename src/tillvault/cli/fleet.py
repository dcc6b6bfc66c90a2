"""Fleet commands: a terminal's health report, and the back office (serve, enrol, revoke).

Thin, like the other command groups: parse, call :mod:`tillvault.terminal.fleet` or
:mod:`tillvault.backoffice`, print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tillvault.cli.output import console, emit_json, guarded
from tillvault.cli.terminal import JsonOpt, _open
from tillvault.errors import InvalidInput

BackofficeTokenOpt = Annotated[
    str,
    typer.Option(
        "--token",
        envvar="TILLVAULT_BACKOFFICE_TOKEN",
        help="The fleet token (at least 16 characters); better from TILLVAULT_BACKOFFICE_TOKEN: an option shows in ps.",
    ),
]


def report(
    to: Annotated[str, typer.Option("--to", envvar="TILLVAULT_BACKOFFICE_URL", help="The back office's URL.")],
    token: BackofficeTokenOpt,
    ca: Annotated[
        Path | None,
        typer.Option("--ca", help="CA certificate (PEM) of a back office with a private CA (default: --archive-ca's)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send this terminal's storage health to the fleet back office (no card or customer data).

    Over https (plain http only to a back office on this machine: the token would cross the network in clear).
    """
    from tillvault.terminal.fleet import send_health

    def run() -> dict[str, Any]:
        with _open() as t:
            return send_health(t, to, token, ca=str(ca) if ca else None)

    out = guarded(run, as_json=as_json)
    if as_json:
        emit_json(out)
    else:
        r = out["report"]
        again = "" if out.get("stored") else " (already there: a retry)"
        runway = "not forecast yet" if r["runway_days"] is None else f"{r['runway_days']:.1f} days"
        console.print(f"reported {r['terminal_id']}: pressure {r['pressure']}, runway {runway}{again}")


BackofficeDsnOpt = Annotated[
    str,
    typer.Option("--dsn", envvar="TILLVAULT_BACKOFFICE_DSN", help="PostgreSQL connection string."),
]


backoffice_app = typer.Typer(help="The fleet back office (PostgreSQL): health reports and a dashboard.")


@backoffice_app.command("serve")
def backoffice_serve(
    dsn: BackofficeDsnOpt = "postgresql://postgres@127.0.0.1:5432/test",
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to serve on.")] = "127.0.0.1:8600",
    token: BackofficeTokenOpt = "",
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate: serve https (needs --tls-key).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")] = None,
) -> None:
    """Serve the back office: terminals POST health, people read the dashboard at /.

    Every request carries the fleet token: off this machine, serve https (--tls-cert, --tls-key)
    or listen on 127.0.0.1 behind a TLS proxy. Plain http on another address is refused.
    """
    try:
        import uvicorn

        from tillvault.backoffice.app import create_app
    except ImportError as exc:
        raise typer.BadParameter(
            f"the back office needs its extras: pip install 'tillvault[backoffice]' ({exc})"
        ) from None

    host, _, port = listen.rpartition(":")

    def build() -> Any:
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidInput(f"--listen must be HOST:PORT, e.g. 127.0.0.1:8600, got {listen!r}")
        check_tls(host.strip("[]"), tls_cert, tls_key)
        return create_app(_fleet_store(dsn, purge=True), token)

    app = guarded(build, as_json=False)
    scheme = "https" if tls_cert else "http"
    console.print(f"back office listening on {scheme}://{host}:{port}/", highlight=False)
    uvicorn.run(
        app,
        host=host.strip("[]"),
        port=int(port),
        log_level="warning",
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
    )


def _fleet_store(dsn: str, *, purge: bool = False) -> Any:
    """The back office's store on ``dsn``, its tables made (and old months dropped with ``purge``).

    :raises InvalidInput: the extras are missing, or PostgreSQL cannot be used (the password is
        never shown, in whichever form the connection string carries it).
    """
    try:
        from tillvault.backoffice.store import FleetStore
    except ImportError as exc:
        raise InvalidInput(f"the back office needs its extras: pip install 'tillvault[backoffice]' ({exc})") from None
    shown, password = _dsn_shown(dsn)
    store = FleetStore(dsn)
    try:
        store.migrate()
        if purge:
            store.purge()  # health reports older than a year and a month go, a month at a time
    except Exception as exc:  # psycopg.OperationalError and kin: one line, not a traceback
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if password:
            detail = detail.replace(password, "***")
        raise InvalidInput(f"cannot use PostgreSQL at {shown}: {detail}") from None
    return store


def _on_store(dsn: str, method: str, *args: Any) -> Any:
    """Call the back office store's ``method`` once, on a store (and pool) closed afterwards."""
    with _fleet_store(dsn) as store:
        return getattr(store, method)(*args)


def _dsn_shown(dsn: str) -> tuple[str, str]:
    """(user@host:port/dbname, the password or "") of a connection string in URL or key=value form."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
    except Exception:  # not parseable: show nothing of it
        return "(an unreadable connection string)", ""
    where = f"{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"
    user = parts.get("user")
    return (f"{user}@{where}" if user else where), str(parts.get("password") or "")


@backoffice_app.command("enrol")
def backoffice_enrol(
    terminal_id: Annotated[str, typer.Argument(help="The terminal id (field 41).")],
    dsn: BackofficeDsnOpt = "postgresql://postgres@127.0.0.1:5432/test",
    as_json: JsonOpt = False,
) -> None:
    """Give a terminal a token of its own (printed once): it opens that terminal's reports and segments only.

    Set it as TILLVAULT_BACKOFFICE_TOKEN on that terminal. Enrolling again replaces the old token.
    """
    out = guarded(lambda: {"terminal_id": terminal_id, "token": _on_store(dsn, "enrol", terminal_id)}, as_json=as_json)
    if as_json:
        emit_json(out)
    else:
        console.print(out["token"], highlight=False, soft_wrap=True)


@backoffice_app.command("revoke")
def backoffice_revoke(
    terminal_id: Annotated[str, typer.Argument(help="The terminal id (field 41).")],
    dsn: BackofficeDsnOpt = "postgresql://postgres@127.0.0.1:5432/test",
    as_json: JsonOpt = False,
) -> None:
    """Withdraw a terminal's own token (a lost or stolen terminal): it opens nothing from now on."""
    out = guarded(
        lambda: {"terminal_id": terminal_id, "revoked": _on_store(dsn, "revoke", terminal_id)}, as_json=as_json
    )
    if as_json:
        emit_json(out)
    else:
        console.print(f"{terminal_id}: {'token revoked' if out['revoked'] else 'had no token of its own'}")


def check_tls(host: str, cert: Path | None, key: Path | None) -> None:
    """The back office's TLS options, checked before anything starts.

    :raises InvalidInput: one of the pair without the other, a pair TLS cannot load, or plain
        http on an address other than this machine's (the fleet token would travel in clear).
    """
    import ssl

    from tillvault.host.wire import server_ssl_context
    from tillvault.terminal.fleet import is_loopback_host

    if (cert is None) != (key is None):
        raise InvalidInput("--tls-cert and --tls-key go together")
    if cert is not None and key is not None:
        try:
            server_ssl_context(cert, key)  # the host's own server context: the same pair checks
        except (OSError, ssl.SSLError) as exc:
            raise InvalidInput(f"--tls-cert {cert} with --tls-key {key}: TLS cannot load them ({exc})") from None
        return
    if not is_loopback_host(host):
        raise InvalidInput(
            f"--listen {host}: plain http there would take the fleet token in clear from the network; give "
            "--tls-cert and --tls-key, or listen on 127.0.0.1 behind a TLS proxy"
        )


def register(app: typer.Typer) -> None:
    """Attach ``report`` and the ``backoffice`` group to the ``tillvault`` app."""
    app.command("report")(report)
    app.add_typer(backoffice_app, name="backoffice")

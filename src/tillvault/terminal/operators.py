"""Operators and their roles (S10: access permissions, so nothing is lost or damaged by mistake).

Roles are off until the first operator is added, and that operator must be a manager: a shop
that never adds one keeps working as before. Once on, each action needs an operator whose role
reaches the action's, proven by a PIN:

| role | may |
|---|---|
| cashier | sell, settle, send waiting advices (flush) |
| supervisor | also refund, void, free space (cleanup) |
| manager | also back up, install software updates, and add, change and remove operators |

A PIN is 4 to 12 digits, kept as a keyed hash (HMAC-SHA256 under the key ring's token key,
which lives outside the data folder, with a salt of its own), compared in constant time. Five
wrong PINs in a row lock the operator for 15 minutes. Every change to the operators, and every
lock, is journalled (the hash chain is the audit trail); no PIN or hash is in an event.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tillvault.errors import InvalidInput, PermissionDenied
from tillvault.store.journal import SETTLEMENT, Journal, WriteContext
from tillvault.store.keys import KeyRing

ROLES = ("cashier", "supervisor", "manager")
#: The least role each action needs.
PERMISSIONS = {
    "sale": "cashier",
    "settle": "cashier",
    "flush": "cashier",
    "refund": "supervisor",
    "void": "supervisor",
    "cleanup": "supervisor",
    "backup": "manager",
    "update": "manager",
    "operators": "manager",
}
#: How an action is named in a refusal.
_LABELS = {
    "operators": "managing operators",
    "flush": "sending waiting advices",
    "cleanup": "freeing space",
    "update": "installing software updates",
}
MAX_FAILED = 5
LOCKOUT_MS = 15 * 60_000
_PIN = re.compile(r"[0-9]{4,12}")
_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def _rank(role: str) -> int:
    return ROLES.index(role)


class Operators:
    """The terminal's operators, in its journal."""

    def __init__(self, journal: Journal, keyring: KeyRing, now_ms: Callable[[], int]) -> None:
        self.journal = journal
        self.keyring = keyring
        self.now_ms = now_ms

    # -- reading -------------------------------------------------------------------------------
    def enabled(self) -> bool:
        """True once an operator exists (then every action needs one)."""
        return self.journal.conn.execute("SELECT 1 FROM operators LIMIT 1").fetchone() is not None

    def list(self) -> list[dict[str, Any]]:
        """Every operator: id, role, when added, whether locked (never the PIN or its hash)."""
        now = self.now_ms()
        rows = self.journal.conn.execute(
            "SELECT operator_id, role, created_ms, failed, locked_until_ms FROM operators ORDER BY operator_id"
        )
        return [
            {
                "operator_id": r[0],
                "role": r[1],
                "added": datetime.fromtimestamp(r[2] / 1000).isoformat(timespec="seconds"),
                "failed_pins": r[3],
                "locked": r[4] > now,
            }
            for r in rows
        ]

    # -- checking ------------------------------------------------------------------------------
    def check(self, action: str, operator_id: str | None, pin: str | None) -> str | None:
        """The operator allowed to do ``action`` (None while roles are off).

        :raises PermissionDenied: no operator or PIN given, unknown operator, wrong PIN (counted),
            locked, or a role below the action's.
        """
        need = PERMISSIONS[action]
        if not self.enabled():
            return None
        what = _LABELS.get(action, action)
        if not operator_id or pin is None:
            raise PermissionDenied(
                f"{what} needs an operator and a PIN (--operator; the PIN from the prompt or "
                "TILLVAULT_OPERATOR_PIN): operator roles are on (tillvault operator list)"
            )
        if not isinstance(pin, str) or not _PIN.fullmatch(pin):
            raise PermissionDenied(f"{what}: a PIN is 4 to 12 digits (0-9)")
        now = self.now_ms()

        def verdict(ctx: WriteContext) -> tuple[str, str]:
            # Read, compare and count in one write transaction: concurrent guesses from other
            # processes are counted one after the other, and a lock once set stays set.
            row = ctx.conn.execute(
                "SELECT role, pin_salt, pin_hash, failed, locked_until_ms FROM operators WHERE operator_id = ?",
                (operator_id,),
            ).fetchone()
            if row is None:
                return "unknown", ""
            role, salt, stored, failed, locked_until = row[0], bytes(row[1]), bytes(row[2]), row[3], row[4]
            if locked_until > now:
                return "locked", datetime.fromtimestamp(locked_until / 1000).strftime("%H:%M")
            if not hmac.compare_digest(self._hash(operator_id, pin, salt), stored):
                if failed + 1 >= MAX_FAILED:
                    ctx.conn.execute(
                        "UPDATE operators SET failed = 0, locked_until_ms = ? WHERE operator_id = ?",
                        (now + LOCKOUT_MS, operator_id),
                    )
                    ctx.emit("operator_locked", {"operator_id": operator_id, "until_ms": now + LOCKOUT_MS})
                    return "now_locked", ""
                ctx.conn.execute("UPDATE operators SET failed = failed + 1 WHERE operator_id = ?", (operator_id,))
                return "wrong", str(MAX_FAILED - failed - 1)
            if failed:
                ctx.conn.execute("UPDATE operators SET failed = 0 WHERE operator_id = ?", (operator_id,))
            return "ok", str(role)

        outcome, detail = self.journal.write(verdict, klass=SETTLEMENT, ts_ms=now).result
        if outcome == "unknown":
            raise PermissionDenied(f"no operator {operator_id!r} on this terminal")
        if outcome == "locked":
            raise PermissionDenied(
                f"operator {operator_id} is locked after {MAX_FAILED} wrong PINs until {detail}; a manager "
                "can set a new PIN (tillvault operator pin)"
            )
        if outcome == "now_locked":
            raise PermissionDenied(f"wrong PIN for operator {operator_id}: locked for 15 minutes")
        if outcome == "wrong":
            raise PermissionDenied(f"wrong PIN for operator {operator_id} ({detail} tries left)")
        if _rank(detail) < _rank(need):
            raise PermissionDenied(f"{what} needs a {need} or above; operator {operator_id} is a {detail}")
        return str(operator_id)

    # -- changing ------------------------------------------------------------------------------
    def add(
        self, operator_id: str, role: str, pin: str, *, by: str | None = None, by_pin: str | None = None
    ) -> dict[str, Any]:
        """Add an operator (the first must be a manager; later ones need a manager's PIN).

        :raises InvalidInput: a bad id, role or PIN, or the operator exists already.
        :raises PermissionDenied: ``by`` is not a manager with that PIN.
        """
        if not isinstance(operator_id, str) or not _ID.fullmatch(operator_id):
            raise InvalidInput(f"operator id must be 1-32 letters, digits, '_', '.' or '-', got {operator_id!r}")
        if role not in ROLES:
            raise InvalidInput(f"role {role!r} is not one of {', '.join(ROLES)}")
        _check_pin(pin)
        if self.enabled():
            self.check("operators", by, by_pin)
        elif role != "manager":
            raise InvalidInput("the first operator must be a manager (who then adds the others)")
        if self.journal.conn.execute("SELECT 1 FROM operators WHERE operator_id = ?", (operator_id,)).fetchone():
            raise InvalidInput(f"operator {operator_id} exists already (tillvault operator pin to change the PIN)")
        salt = secrets.token_bytes(16)
        digest = self._hash(operator_id, pin, salt)

        def apply(ctx: WriteContext) -> None:
            ctx.conn.execute(
                "INSERT INTO operators (operator_id, role, pin_salt, pin_hash, created_ms) VALUES (?, ?, ?, ?, ?)",
                (operator_id, role, salt, digest, ctx.ts_ms),
            )
            ctx.emit("operator_added", {"operator_id": operator_id, "role": role, "by": by})

        self.journal.write(apply, klass=SETTLEMENT, ts_ms=self.now_ms())
        return {"operator_id": operator_id, "role": role}

    def set_pin(self, operator_id: str, pin: str, *, by: str | None, by_pin: str | None) -> None:
        """Give ``operator_id`` a new PIN and unlock it (a manager's act).

        :raises InvalidInput: a bad PIN or no such operator.
        :raises PermissionDenied: ``by`` is not a manager with that PIN.
        """
        _check_pin(pin)
        self.check("operators", by, by_pin)
        salt = secrets.token_bytes(16)
        digest = self._hash(operator_id, pin, salt)

        def apply(ctx: WriteContext) -> None:
            n = ctx.conn.execute(
                "UPDATE operators SET pin_salt = ?, pin_hash = ?, failed = 0, locked_until_ms = 0 "
                "WHERE operator_id = ?",
                (salt, digest, operator_id),
            ).rowcount
            if n == 0:
                raise InvalidInput(f"no operator {operator_id!r} on this terminal")
            ctx.emit("operator_pin_set", {"operator_id": operator_id, "by": by})

        self.journal.write(apply, klass=SETTLEMENT, ts_ms=self.now_ms())

    def remove(self, operator_id: str, *, by: str | None, by_pin: str | None) -> None:
        """Remove an operator (a manager's act; the last manager stays while others remain).

        :raises InvalidInput: no such operator, or removing the last manager would leave operators
            no one can administer.
        :raises PermissionDenied: ``by`` is not a manager with that PIN.
        """
        self.check("operators", by, by_pin)
        rows = dict(self.journal.conn.execute("SELECT operator_id, role FROM operators").fetchall())
        if operator_id not in rows:
            raise InvalidInput(f"no operator {operator_id!r} on this terminal")
        managers = [o for o, r in rows.items() if r == "manager"]
        if rows[operator_id] == "manager" and managers == [operator_id] and len(rows) > 1:
            raise InvalidInput("that is the last manager: add another manager first, or remove the others")

        def apply(ctx: WriteContext) -> None:
            ctx.conn.execute("DELETE FROM operators WHERE operator_id = ?", (operator_id,))
            ctx.emit("operator_removed", {"operator_id": operator_id, "by": by})

        self.journal.write(apply, klass=SETTLEMENT, ts_ms=self.now_ms())

    # -- helpers -------------------------------------------------------------------------------
    def _hash(self, operator_id: str, pin: str, salt: bytes) -> bytes:
        message = b"tillvault-operator-pin\x00" + operator_id.encode() + b"\x00" + salt + b"\x00" + pin.encode()
        return hmac.digest(self.keyring.token_key(), message, "sha256")


def _check_pin(pin: str) -> None:
    if not isinstance(pin, str) or not _PIN.fullmatch(pin):
        raise InvalidInput("a PIN must be 4 to 12 digits (0-9)")

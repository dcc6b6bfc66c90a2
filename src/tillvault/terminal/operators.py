"""Operators and their roles (S10: access permissions, so nothing is lost or damaged by mistake).

Roles are off until the first operator is added, and that operator must be a manager: a shop
that never adds one keeps working as before. Once on, each action needs an operator whose role
reaches the action's, proven by a PIN:

| role | may |
|---|---|
| cashier | sell, settle, send waiting advices (flush) |
| supervisor | also refund, void, free space (cleanup) |
| manager | also back up, install updates, change the archive or the acquirer host, manage operators |

A PIN is 4 to 12 digits, kept as a keyed hash (HMAC-SHA256 under the key ring's token key,
which lives outside the data folder, with a salt of its own), compared in constant time. Five
wrong PINs in a row lock the operator for 15 minutes. Every change to the operators, and every
lock, is journalled (the hash chain is the audit trail); no PIN or hash is in an event.

When roles turn on, the first manager is given a **recovery code** (20 characters, about 98
bits, shown once, kept as a keyed hash like the PINs): the way back when every manager PIN is
lost (:meth:`Operators.recover` sets a manager's PIN with it). A code works once, and five wrong
codes in a row lock recovery for 15 minutes; a manager can issue a new code at any time.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tillvault.domain.cards import redact_pans
from tillvault.errors import InvalidInput, PermissionDenied
from tillvault.store.encoding import decode
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
    "archive": "manager",
    "acquirer": "manager",
    "update": "manager",
    "operators": "manager",
}
#: How an action is named in a refusal.
_LABELS = {
    "operators": "managing operators",
    "flush": "sending waiting advices",
    "cleanup": "freeing space",
    "update": "installing software updates",
    "archive": "changing where settled data is offloaded",
    "acquirer": "changing the acquirer host's address",
}
MAX_FAILED = 5
LOCKOUT_MS = 15 * 60_000
_PIN = re.compile(r"[0-9]{4,12}")
_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")
#: Where the recovery code's salt, keyed hash and wrong-guess count are kept (the ``meta`` table).
RECOVERY_META = "operators_recovery"
#: Recovery code characters: no 0/O, 1/I/L or U, so it reads back from paper without doubt.
_RECOVERY_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"


def check_operator_id(operator_id: object) -> None:
    """Refuse an operator id that is not 1-32 letters, digits, ``_``, ``.`` or ``-``, or that is a
    card number (it is stored and printed as it is: a card swiped into the operator field must
    not be).

    :raises InvalidInput: naming the problem (a card number only masked).
    """
    shown = redact_pans(str(operator_id))
    if not isinstance(operator_id, str) or not _ID.fullmatch(operator_id):
        raise InvalidInput(f"operator id must be 1-32 letters, digits, '_', '.' or '-', got {shown!r}")
    if shown != operator_id:
        raise InvalidInput(f"operator id {shown!r} is a card number: give the cashier's id, not a card")


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
        check_operator_id(operator_id)
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
        first = not self.enabled()
        code = _new_recovery_code() if first else None

        def apply(ctx: WriteContext) -> None:
            ctx.conn.execute(
                "INSERT INTO operators (operator_id, role, pin_salt, pin_hash, created_ms) VALUES (?, ?, ?, ?, ?)",
                (operator_id, role, salt, digest, ctx.ts_ms),
            )
            ctx.emit("operator_added", {"operator_id": operator_id, "role": role, "by": by})
            if code is not None:
                self._store_recovery(ctx, code, by=operator_id)

        self.journal.write(apply, klass=SETTLEMENT, ts_ms=self.now_ms())
        out: dict[str, Any] = {"operator_id": operator_id, "role": role}
        if code is not None:
            out["recovery_code"] = code
        return out

    def new_recovery_code(self, *, by: str | None, by_pin: str | None) -> str:
        """Issue a new recovery code (a manager's act); the old one stops working. Shown once.

        :raises PermissionDenied: roles are off, or ``by`` is not a manager with that PIN.
        """
        if not self.enabled():
            raise PermissionDenied("operator roles are off: there is nothing to recover (tillvault operator add)")
        self.check("operators", by, by_pin)
        code = _new_recovery_code()
        self.journal.write(lambda ctx: self._store_recovery(ctx, code, by=by), klass=SETTLEMENT, ts_ms=self.now_ms())
        return code

    def recover(self, code: str, operator_id: str, new_pin: str) -> str:
        """Give manager ``operator_id`` the PIN ``new_pin`` with the recovery code, when no manager
        PIN is known any more; the manager is unlocked. Returns the next recovery code (a code
        works once).

        :raises InvalidInput: a bad PIN, or ``operator_id`` is not a manager here.
        :raises PermissionDenied: no code was issued, the code is wrong (counted), or recovery is
            locked after five wrong codes.
        """
        _check_pin(new_pin)
        now = self.now_ms()
        given = _normal_code(code)
        salt = secrets.token_bytes(16)
        digest = self._hash(operator_id, new_pin, salt)
        following = _new_recovery_code()

        def verdict(ctx: WriteContext) -> tuple[str, str]:
            row = ctx.conn.execute("SELECT value FROM meta WHERE key = ?", (RECOVERY_META,)).fetchone()
            held = None if row is None else decode(row[0].encode("utf-8"))
            if not held:
                return "none", ""
            if held.get("locked_until_ms", 0) > now:
                return "locked", datetime.fromtimestamp(held["locked_until_ms"] / 1000).strftime("%H:%M")
            expected = bytes.fromhex(held["hash"])
            if not hmac.compare_digest(self._recovery_hash(given, bytes.fromhex(held["salt"])), expected):
                failed = int(held.get("failed", 0)) + 1
                locked = now + LOCKOUT_MS if failed >= MAX_FAILED else 0
                self.journal.set_meta(
                    ctx.conn, RECOVERY_META, {**held, "failed": 0 if locked else failed, "locked_until_ms": locked}
                )
                if locked:
                    ctx.emit("operator_recovery_locked", {"until_ms": locked})
                return ("now_locked", "") if locked else ("wrong", str(MAX_FAILED - failed))
            role = ctx.conn.execute("SELECT role FROM operators WHERE operator_id = ?", (operator_id,)).fetchone()
            if role is None or role[0] != "manager":
                return "not_manager", ""
            ctx.conn.execute(
                "UPDATE operators SET pin_salt = ?, pin_hash = ?, failed = 0, locked_until_ms = 0 "
                "WHERE operator_id = ?",
                (salt, digest, operator_id),
            )
            ctx.emit("operator_recovered", {"operator_id": operator_id})
            self._store_recovery(ctx, following, by=operator_id)
            return "ok", ""

        outcome, detail = self.journal.write(verdict, klass=SETTLEMENT, ts_ms=now).result
        if outcome == "none":
            raise PermissionDenied(
                "no recovery code was issued on this terminal (roles were turned on before codes): a manager "
                "can issue one now (tillvault operator recovery-code)"
            )
        if outcome == "locked":
            raise PermissionDenied(f"recovery is locked after {MAX_FAILED} wrong codes until {detail}")
        if outcome == "now_locked":
            raise PermissionDenied("wrong recovery code: recovery is locked for 15 minutes")
        if outcome == "wrong":
            raise PermissionDenied(f"wrong recovery code ({detail} tries left)")
        if outcome == "not_manager":
            raise InvalidInput(f"{operator_id!r} is not a manager on this terminal: recover a manager's PIN")
        return following

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

    def _recovery_hash(self, code: str, salt: bytes) -> bytes:
        message = b"tillvault-operator-recovery\x00" + salt + b"\x00" + code.encode()
        return hmac.digest(self.keyring.token_key(), message, "sha256")

    def _store_recovery(self, ctx: WriteContext, code: str, *, by: str | None) -> None:
        """Keep ``code``'s keyed hash (replacing the last code) and journal that it changed."""
        salt = secrets.token_bytes(16)
        held = {"salt": salt.hex(), "hash": self._recovery_hash(_normal_code(code), salt).hex(), "failed": 0}
        self.journal.set_meta(ctx.conn, RECOVERY_META, {**held, "locked_until_ms": 0})
        ctx.emit("operator_recovery_code_issued", {"by": by})


def _new_recovery_code() -> str:
    chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(20))
    return "-".join(chars[i : i + 5] for i in range(0, 20, 5))


def _normal_code(code: str) -> str:
    """A recovery code as typed (any case, spaces or dashes) in its one canonical form."""
    return "".join(ch for ch in str(code).upper() if ch.isalnum())


def _check_pin(pin: str) -> None:
    if not isinstance(pin, str) or not _PIN.fullmatch(pin):
        raise InvalidInput("a PIN must be 4 to 12 digits (0-9)")

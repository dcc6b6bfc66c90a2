"""Fault injection for the reference host: slow, silent, rude or broken on request.

The configuration is a JSON object keyed by action; each value is ``true`` (always), a number
(``delay`` only: seconds) or an object with options, and ``false``/``null`` turns it off::

    {"delay": {"seconds": 3, "count": 1, "mtis": ["0200"]},
     "drop": {"probability": 0.5},
     "decline": true}

Actions, applied to one request each:

- ``delay``: wait ``seconds`` after processing, before replying;
- ``drop``: process the request, send nothing, keep the connection open;
- ``close_before``: close the connection without processing the request;
- ``close_after``: process the request, then close the connection without replying;
- ``garbage``: process the request, reply with bytes that are not ISO 8583;
- ``decline``: answer "91 issuer unavailable" without processing anything.

Options: ``probability`` (0..1, default 1), ``count`` (apply this many times, then stop;
default unlimited) and ``mtis`` (only requests of these MTIs; unreadable messages count as MTI
``"????"``). The host reads ``faults.json`` in its data dir whenever the file changes
(:func:`write_faults_file` replaces it atomically), and tests in the same process can call
:meth:`FaultInjector.set`; whichever happened last is in force, and counts restart then.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tillvault.errors import InvalidInput

__all__ = ["ACTIONS", "FAULTS_FILE", "FaultInjector", "FaultPlan", "parse_faults", "write_faults_file"]

FAULTS_FILE = "faults.json"
ACTIONS = ("delay", "drop", "close_before", "close_after", "garbage", "decline")

log = logging.getLogger("tillvault.host")


@dataclass
class _Rule:
    action: str
    seconds: float = 0.0
    probability: float = 1.0
    remaining: int | None = None
    mtis: frozenset[str] | None = None


@dataclass(frozen=True)
class FaultPlan:
    """What to do to one request (all off by default)."""

    delay: float = 0.0
    drop: bool = False
    close_before: bool = False
    close_after: bool = False
    garbage: bool = False
    decline: bool = False
    actions: tuple[str, ...] = field(default=())


#: The plan of a request without faults (most of them): shared, it is immutable.
_NO_FAULTS = FaultPlan()


def parse_faults(config: Mapping[str, Any] | None) -> list[_Rule]:
    """Check a fault configuration and turn it into rules.

    :raises InvalidInput: an unknown action or option, or a value out of range.
    """
    if config is None:
        return []
    if not isinstance(config, Mapping):
        raise InvalidInput("fault configuration must be a JSON object keyed by action")
    rules = []
    for action, value in config.items():
        if action not in ACTIONS:
            raise InvalidInput(f"unknown fault {action!r}; known: {', '.join(ACTIONS)}")
        if value is None or value is False:
            continue
        options: dict[str, Any]
        if value is True:
            options = {}
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if action != "delay":
                raise InvalidInput(f"fault {action!r} takes true or an object, not a number")
            options = {"seconds": value}
        elif isinstance(value, Mapping):
            options = dict(value)
        else:
            raise InvalidInput(f"fault {action!r} must be true, false, a number (delay) or an object")
        unknown = set(options) - {"seconds", "probability", "count", "mtis"}
        if unknown:
            raise InvalidInput(f"fault {action!r} has unknown options {sorted(unknown)}")
        rule = _Rule(action)
        try:
            rule.seconds = float(options.get("seconds", 0.0))
            rule.probability = float(options.get("probability", 1.0))
            count = options.get("count")
            rule.remaining = None if count is None else int(count)
            mtis = options.get("mtis")
            rule.mtis = None if mtis is None else frozenset(str(m) for m in mtis)
        except (TypeError, ValueError):
            raise InvalidInput(f"fault {action!r} has an option of the wrong type") from None
        if action == "delay" and rule.seconds <= 0:
            raise InvalidInput("fault 'delay' needs seconds > 0")
        if not 0.0 <= rule.probability <= 1.0:
            raise InvalidInput(f"fault {action!r}: probability must be between 0 and 1")
        if rule.remaining is not None and rule.remaining < 0:
            raise InvalidInput(f"fault {action!r}: count must not be negative")
        rules.append(rule)
    return rules


def write_faults_file(data_dir: str | Path, config: Mapping[str, Any] | None) -> Path:
    """Replace ``faults.json`` in a host data dir atomically (``None`` or ``{}``: no faults).

    :raises InvalidInput: the configuration is invalid (nothing is written).
    """
    parse_faults(config)
    path = Path(data_dir) / FAULTS_FILE
    tmp = path.with_name(f".{FAULTS_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(dict(config or {})))
    os.replace(tmp, path)
    return path


class FaultInjector:
    """Decides the faults for each request, from ``config`` and the file at ``path``."""

    def __init__(
        self,
        path: Path | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.path = path
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._rules = parse_faults(config)
        self._seen: tuple[int, int, int] | None = None
        self._poll()  # a file present at start is in force at once

    def set(self, config: Mapping[str, Any] | None) -> None:
        """Replace the faults in force (``None`` or ``{}``: none).

        :raises InvalidInput: the configuration is invalid (the old one stays).
        """
        rules = parse_faults(config)
        with self._lock:
            self._rules = rules

    def _poll(self) -> None:
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._seen is not None:
                self._seen = None
                with self._lock:
                    self._rules = []
            return
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if signature == self._seen:
            return
        self._seen = signature
        try:
            rules = parse_faults(json.loads(self.path.read_text() or "{}"))
        except (OSError, ValueError, InvalidInput) as exc:
            log.warning("ignoring %s: %s", self.path, exc)
            return
        with self._lock:
            self._rules = rules

    def plan(self, mti: str | None) -> FaultPlan:
        """The faults to apply to one request of ``mti`` (None: unreadable), using up counts."""
        self._poll()
        if not self._rules:
            return _NO_FAULTS
        chosen: dict[str, Any] = {}
        with self._lock:
            for rule in self._rules:
                if rule.mtis is not None and (mti or "????") not in rule.mtis:
                    continue
                if rule.remaining == 0:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                chosen[rule.action] = rule.seconds if rule.action == "delay" else True
        return FaultPlan(
            delay=float(chosen.get("delay", 0.0)),
            drop="drop" in chosen,
            close_before="close_before" in chosen,
            close_after="close_after" in chosen,
            garbage="garbage" in chosen,
            decline="decline" in chosen,
            actions=tuple(chosen),
        )

"""Local card checks: brand by IIN, length, Luhn, expiry, masking and keyed tokens.

Nothing here stores or prints a full PAN: results carry the masked form (first 6 / last 4,
PCI DSS 3.4.1) and the error messages use it too. A PAN kept at rest is a keyed HMAC token
(:func:`card_token`) plus the masked form (DESIGN invariant 4).

Brand ranges come from the public ISO/IEC 7812 IIN tables (Wikipedia "Payment card number",
binlist's scheme list, Discover's and Mastercard's published acceptance ranges). The longest
matching prefix wins, so a national scheme's narrow range beats a broad Maestro range.

Decisions:

* ``622126``-``622925`` is co-branded Discover / China UnionPay. Cards there are issued by
  Chinese banks on the UnionPay network and may fail Luhn like other UnionPay cards, so we
  report ``unionpay`` with ``co_brand="discover"`` (Braintree's test list agrees).
* UnionPay PANs (``62``, ``81``) are exempt from Luhn: a failure is a warning, not an error.
* Maestro keeps Mastercard's broad ``50``, ``56``-``69`` allocation, minus what UnionPay
  (``62``) and Discover (``64x``, ``65``) own; narrower national ranges (Elo, Verve, RuPay,
  Dankort, Hipercard...) win by being longer.
* RuPay is recognized by ``508``, ``607``-``608``, ``6521``-``6522`` and ``82``; its other
  published prefixes (``60``, ``65``, ``81``, ``353``, ``356``) are shared with Maestro,
  Discover, UnionPay and JCB, which keep them.
"""

from __future__ import annotations

import functools
import hmac
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from tillvault.errors import CardRejected, InvalidInput

__all__ = [
    "BRAND_NAMES",
    "Brand",
    "CardCheck",
    "card_token",
    "check_card",
    "check_expiry",
    "detect_brand",
    "expiry_year",
    "luhn_check_digit",
    "luhn_ok",
    "mask_pan",
    "normalize_pan",
    "redact_pans",
    "require_valid_card",
]

#: Minimum HMAC key size for :func:`card_token`, in bytes.
MIN_TOKEN_KEY_BYTES = 16


@dataclass(frozen=True)
class Brand:
    """A card scheme: its id, display name, allowed PAN lengths, and whether Luhn is binding."""

    id: str
    name: str
    lengths: tuple[int, ...]
    luhn_required: bool = True
    co_brand: str | None = None


def _lengths(lo: int, hi: int) -> tuple[int, ...]:
    return tuple(range(lo, hi + 1))


_VISA = Brand("visa", "Visa", (13, 16, 19))
_MASTERCARD = Brand("mastercard", "Mastercard", (16,))
_AMEX = Brand("amex", "American Express", (15,))
_JCB = Brand("jcb", "JCB", _lengths(16, 19))
_DISCOVER = Brand("discover", "Discover", _lengths(16, 19))
_UNIONPAY = Brand("unionpay", "UnionPay", _lengths(16, 19), luhn_required=False)
_UNIONPAY_DISCOVER = Brand("unionpay", "UnionPay", _lengths(16, 19), luhn_required=False, co_brand="discover")
_DINERS = Brand("diners", "Diners Club", _lengths(14, 19))
_MAESTRO = Brand("maestro", "Maestro", _lengths(12, 19))
_MIR = Brand("mir", "Mir", _lengths(16, 19))
_RUPAY = Brand("rupay", "RuPay", (16,))
_ELO = Brand("elo", "Elo", (16,))
_VERVE = Brand("verve", "Verve", (16, 18, 19))
_TROY = Brand("troy", "Troy", (16,))
_DANKORT = Brand("dankort", "Dankort", (16,))
_UATP = Brand("uatp", "UATP", (15,))
_INTERPAYMENT = Brand("interpayment", "InterPayment", _lengths(16, 19))
_INSTAPAYMENT = Brand("instapayment", "InstaPayment", (16,))
_HIPERCARD = Brand("hipercard", "Hipercard", (16, 19))
_HIPER = Brand("hiper", "Hiper", (16,))
_NAPAS = Brand("napas", "NAPAS", (16, 19))
_BORICA = Brand("borica", "BORICA", (16,))
_HUMO = Brand("humo", "Humo", (16,))
_UZCARD = Brand("uzcard", "UzCard", (16,))
_LANKAPAY = Brand("lankapay", "LankaPay", (16,))

# (first prefix, last prefix, brand): both ends inclusive and of equal length.
_RANGES: list[tuple[str, str, Brand]] = [
    ("4", "4", _VISA),
    ("51", "55", _MASTERCARD),
    ("2221", "2720", _MASTERCARD),
    ("34", "34", _AMEX),
    ("37", "37", _AMEX),
    ("3528", "3589", _JCB),
    # Legacy JCB ranges still routed as JCB in Discover's acceptance tables.
    ("3088", "3094", _JCB),
    ("3096", "3102", _JCB),
    ("3112", "3120", _JCB),
    ("3158", "3159", _JCB),
    ("3337", "3349", _JCB),
    ("6011", "6011", _DISCOVER),
    ("644", "649", _DISCOVER),
    ("65", "65", _DISCOVER),
    ("62", "62", _UNIONPAY),
    ("81", "81", _UNIONPAY),
    ("622126", "622925", _UNIONPAY_DISCOVER),
    ("36", "36", _DINERS),
    ("300", "305", _DINERS),
    ("3095", "3095", _DINERS),
    ("38", "39", _DINERS),
    ("50", "50", _MAESTRO),
    ("56", "58", _MAESTRO),
    ("60", "61", _MAESTRO),
    ("63", "63", _MAESTRO),
    ("640", "643", _MAESTRO),
    ("66", "69", _MAESTRO),
    ("2200", "2204", _MIR),
    ("2205", "2205", _BORICA),
    ("508", "508", _RUPAY),
    ("607", "608", _RUPAY),
    ("6521", "6522", _RUPAY),
    ("82", "82", _RUPAY),
    ("401178", "401179", _ELO),
    ("431274", "431274", _ELO),
    ("438935", "438935", _ELO),
    ("451416", "451416", _ELO),
    ("457393", "457393", _ELO),
    ("457631", "457632", _ELO),
    ("504175", "504175", _ELO),
    ("506699", "506778", _ELO),
    ("509000", "509999", _ELO),
    ("627780", "627780", _ELO),
    ("636297", "636297", _ELO),
    ("636368", "636368", _ELO),
    ("650031", "650033", _ELO),
    ("650035", "650051", _ELO),
    ("650405", "650439", _ELO),
    ("650485", "650538", _ELO),
    ("650541", "650598", _ELO),
    ("650700", "650718", _ELO),
    ("650720", "650727", _ELO),
    ("650901", "650978", _ELO),
    ("651652", "651679", _ELO),
    ("655000", "655019", _ELO),
    ("655021", "655058", _ELO),
    # Verve: 506099-506198 and 507865-507964 are the published IIN blocks; the issuers' test
    # cards (and the checks in Nigerian payment libraries) use all of 5060-5061 and 5078-5079.
    ("5060", "5061", _VERVE),
    ("5078", "5079", _VERVE),
    ("650002", "650027", _VERVE),
    ("9792", "9792", _TROY),
    ("5019", "5019", _DANKORT),
    ("1", "1", _UATP),
    ("636", "636", _INTERPAYMENT),
    ("637", "639", _INSTAPAYMENT),
    ("606282", "606282", _HIPERCARD),
    ("384100", "384100", _HIPERCARD),
    ("384140", "384140", _HIPERCARD),
    ("384160", "384160", _HIPERCARD),
    ("637095", "637095", _HIPER),
    ("637568", "637568", _HIPER),
    ("637599", "637599", _HIPER),
    ("637609", "637609", _HIPER),
    ("637612", "637612", _HIPER),
    ("9704", "9704", _NAPAS),
    ("9860", "9860", _HUMO),
    ("8600", "8600", _UZCARD),
    ("357111", "357111", _LANKAPAY),
]

#: Brand id -> display name, for every brand TillVault recognizes.
BRAND_NAMES: dict[str, str] = {b.id: b.name for _, _, b in _RANGES}


#: The longest IIN range bound: a brand depends on no more digits than these.
_IIN_MAX = max(len(lo) for lo, _, _ in _RANGES)


def detect_brand(digits: str) -> Brand | None:
    """The brand whose IIN range is the longest prefix of ``digits`` (only digits), or ``None``."""
    return _detect_iin(digits[:_IIN_MAX])


@functools.lru_cache(maxsize=4096)
def _detect_iin(digits: str) -> Brand | None:
    """:func:`detect_brand` on at most the IIN's digits (public: the first six to eight), cached."""
    best: Brand | None = None
    best_len = 0
    for lo, hi, brand in _RANGES:
        n = len(lo)
        if n <= best_len or len(digits) < n:
            continue
        head = digits[:n]
        if head.isdigit() and int(lo) <= int(head) <= int(hi):
            best, best_len = brand, n
    return best


def luhn_ok(digits: str) -> bool:
    """Whether a digit string passes the Luhn (mod 10) check; ``False`` for empty or non-digits."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """The Luhn check digit to append to ``partial`` (digits only).

    :raises InvalidInput: ``partial`` is empty or holds a non-digit.
    """
    if not partial or not partial.isascii() or not partial.isdigit():
        raise InvalidInput("Luhn check digit needs a non-empty string of digits")
    for d in "0123456789":
        if luhn_ok(partial + d):
            return d
    raise AssertionError("unreachable: one of ten digits always completes a Luhn number")


def mask_pan(digits: str) -> str:
    """Mask a PAN so that at most the first 6 and last 4 digits show; the length is kept.

    ``6228480000001234`` -> ``622848******1234``. Numbers too short to hide at least three
    digits that way show fewer: 8-12 digits keep only the last 4, shorter ones nothing.
    """
    n = len(digits)
    if n >= 13:
        return digits[:6] + "*" * (n - 10) + digits[-4:]
    if n >= 8:
        return "*" * (n - 4) + digits[-4:]
    return "*" * n


#: A run of 12-19 digits, single spaces or dashes allowed between them (as a PAN is grouped), that
#: is not part of a longer token (a UUID, a hex digest, a file name); a whole path component is
#: masked (a card number typed as a folder name is echoed in the error that names the folder).
_PAN_LIKE = re.compile(
    r"(?<![0-9A-Za-z_.-])[0-9](?:[ -]?[0-9]){11,18}(?![0-9A-Za-z_])"
    # ... and the PAN of magnetic track 1 ("%B4111...^NAME^YYMM..."), behind its format code B.
    r"|(?<=B)[0-9]{12,19}(?=\^)"
)


def redact_pans(text: str) -> str:
    """``text`` with every card number in it masked (:func:`mask_pan`): a run of 12-19 digits
    (grouped or not, not part of a longer token) that has a card brand's prefix and length and
    passes the brand's Luhn check (UnionPay's need not).

    The last guard before text leaves the program: an error that quotes what was typed
    (a PAN keyed into the amount, track data swiped into the wrong field) never shows it whole.
    Other long numbers (retrieval references, merchant ids, amounts) pass unchanged.
    """
    if not any(c.isdigit() for c in text):
        return text

    def mask(m: re.Match[str]) -> str:
        digits = m.group(0).replace(" ", "").replace("-", "")
        brand = detect_brand(digits)
        if brand is None or len(digits) not in brand.lengths or (brand.luhn_required and not luhn_ok(digits)):
            return m.group(0)
        return mask_pan(digits)

    masked = _PAN_LIKE.sub(mask, text)
    if "^" in masked or "=" in masked:
        # The rest of a swiped track (name, expiry, service code, discretionary data) goes too.
        masked = _TRACK_1_REST.sub(r"\1***^***", masked)
        masked = _TRACK_2_REST.sub(r"\1***", masked)
    return masked


#: After a (masked) track-1 PAN: ``^NAME^YYMM SERVICE DISCRETIONARY`` up to the end sentinel.
_TRACK_1_REST = re.compile(r"(B[0-9]{6}\*+[0-9]{4}\^)[^^]{0,26}\^[^?]*\??")
#: After a (masked) track-2 PAN: ``=YYMM SERVICE DISCRETIONARY`` up to the end sentinel.
_TRACK_2_REST = re.compile(r"([0-9]{6}\*+[0-9]{4}=)[^?]+\??")


#: Dashes a copied card number may be grouped with: hyphen-minus, hyphen to horizontal bar, minus.
_DASHES = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212")


def normalize_pan(pan: str) -> str:
    """Strip spaces and dashes (any Unicode space, the Unicode dashes) from a PAN; full-width
    digits count as digits. Return the ASCII digits.

    :raises CardRejected: the PAN is empty or holds anything but digits, spaces and dashes
        (the message names the character and its position, never the PAN).
    """
    if not isinstance(pan, str):
        raise CardRejected(f"PAN must be text, not {type(pan).__name__}")
    digits: list[str] = []
    for pos, ch in enumerate(pan, start=1):
        if ch.isspace() or ch in _DASHES:  # a no-break space or an en dash from a copied number too
            continue
        if "0" <= ch <= "9":
            digits.append(ch)
            continue
        if "\uff10" <= ch <= "\uff19":  # full-width digits, as a Chinese or Japanese input method types them
            digits.append(chr(ord(ch) - 0xFF10 + 48))
            continue
        if ch.isdigit():
            what = "a non-ASCII digit"
        elif ch.isalpha():
            what = "a letter"
        else:
            what = "a character that is not a digit"
        shown = ch if ch.isprintable() and not ch.isdigit() else f"U+{ord(ch):04X}"
        raise CardRejected(
            f"PAN contains {what} ({shown!r}) at position {pos}; only digits, spaces and dashes are allowed"
        )
    if not digits:
        raise CardRejected("PAN is empty")
    return "".join(digits)


def _describe_lengths(lengths: tuple[int, ...]) -> str:
    if len(lengths) == 1:
        return str(lengths[0])
    if len(lengths) > 2 and list(lengths) == list(range(lengths[0], lengths[-1] + 1)):
        return f"{lengths[0]} to {lengths[-1]}"
    return ", ".join(str(n) for n in lengths[:-1]) + f" or {lengths[-1]}"


def expiry_year(yy: str) -> int:
    """The year of a two-digit expiry year, as EMV reads dates: 00-49 are 2000-2049, 50-99 1950-1999."""
    n = int(yy)
    return 2000 + n if n < 50 else 1900 + n


def check_expiry(expiry: str, *, today: date | None = None) -> list[str]:
    """Check a card expiry in ``YYMM`` form (ISO 8583 field 14); return the problems found.

    A card is valid through the last day of its expiry month: ``2512`` is good on 2025-12-31
    and expired on 2026-01-01. Years are read as EMV reads them (:func:`expiry_year`): 00-49 are
    20YY, 50-99 are 19YY, so ``9912`` expired in 1999.

    :returns: a list of error messages, empty when the expiry is fine.
    """
    today = today or date.today()
    if not isinstance(expiry, str):
        return [f"expiry must be text in YYMM form, not {type(expiry).__name__}"]
    text = expiry.strip()
    if not re.fullmatch(r"[0-9]{4}", text):
        shown = text if len(text) <= 8 else text[:8] + "..."
        return [f"expiry {shown!r} must be 4 digits in YYMM form (year then month), like 2712"]
    year, month = expiry_year(text[:2]), int(text[2:])
    if not 1 <= month <= 12:
        return [f"expiry {text!r}: month {text[2:]} is not 01 to 12 (the form is YYMM)"]
    if (year, month) < (today.year, today.month):
        return [f"card expired: expiry {text} (month {year}-{month:02d}) has passed"]
    return []


@dataclass
class CardCheck:
    """The outcome of :func:`check_card`. Holds the masked PAN only, never the full one."""

    valid: bool
    brand: str | None
    masked: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    luhn_ok: bool = False
    length: int = 0
    brand_name: str | None = None
    co_brand: str | None = None
    expiry: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``valid``, ``brand``, ``masked``, ``errors`` and the details."""
        return {
            "valid": self.valid,
            "brand": self.brand,
            "masked": self.masked,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "luhn_ok": self.luhn_ok,
            "length": self.length,
            "brand_name": self.brand_name,
            "co_brand": self.co_brand,
            "expiry": self.expiry,
        }


def check_card(pan: str, expiry: str | None = None, *, today: date | None = None) -> CardCheck:
    """Check a card locally: characters, brand by IIN, length for the brand, Luhn, expiry.

    Spaces and dashes in ``pan`` are ignored. UnionPay cards are exempt from Luhn (a failure
    becomes a warning). ``expiry`` is ``YYMM``; ``None`` skips the expiry check. ``today``
    defaults to the system date (inject it in tests).

    Never raises for bad card data: problems are listed in ``errors`` and ``valid`` is False.
    """
    try:
        digits = normalize_pan(pan)
    except CardRejected as exc:
        return CardCheck(valid=False, brand=None, masked="", errors=[str(exc)])
    masked = mask_pan(digits)
    n = len(digits)
    errors: list[str] = []
    warnings: list[str] = []
    brand = detect_brand(digits)
    passes_luhn = luhn_ok(digits)
    if brand is None:
        if n < 12 or n > 19:
            errors.append(f"PAN has {n} digits; card numbers have 12 to 19")
        errors.append(f"PAN {masked} matches no known card brand")
    else:
        if n not in brand.lengths:
            errors.append(f"PAN has {n} digits; {brand.name} allows {_describe_lengths(brand.lengths)}")
        if not passes_luhn:
            if brand.luhn_required:
                errors.append(f"PAN {masked} fails the Luhn check (a digit is probably mistyped)")
            else:
                warnings.append(f"PAN {masked} fails the Luhn check; accepted because {brand.name} PANs are exempt")
    if brand is not None and brand.co_brand:
        warnings.append(f"IIN {digits[:6]} is co-branded {brand.name}/{BRAND_NAMES[brand.co_brand]}")
    shown_expiry = None
    if expiry is not None:
        errors.extend(check_expiry(expiry, today=today))
        if isinstance(expiry, str) and re.fullmatch(r"[0-9]{4}", expiry.strip()):
            shown_expiry = expiry.strip()
    return CardCheck(
        valid=not errors,
        brand=brand.id if brand else None,
        masked=masked,
        errors=errors,
        warnings=warnings,
        luhn_ok=passes_luhn,
        length=n,
        brand_name=brand.name if brand else None,
        co_brand=brand.co_brand if brand else None,
        expiry=shown_expiry,
    )


def require_valid_card(pan: str, expiry: str | None = None, *, today: date | None = None) -> CardCheck:
    """Like :func:`check_card`, but raise when the card fails.

    :returns: the passing :class:`CardCheck` (warnings may be present).
    :raises CardRejected: with every problem in ``errors`` and a one-line message joining them.
    """
    result = check_card(pan, expiry, today=today)
    if not result.valid:
        raise CardRejected(
            "card rejected: " + "; ".join(result.errors),
            list(result.errors),
            masked=result.masked or None,
            brand=result.brand,
        )
    return result


def card_token(pan: str, key: bytes) -> str:
    """A keyed token for a PAN: HMAC-SHA256 of the normalized digits, as 64 lowercase hex chars.

    The same PAN and key always give the same token, so it can index "per card per day"
    totals without keeping the PAN. Spaces and dashes do not change the token.

    :raises InvalidInput: ``key`` is not bytes or is shorter than 16 bytes.
    :raises CardRejected: the PAN holds characters other than digits, spaces and dashes.
    """
    if not isinstance(key, bytes | bytearray):
        raise InvalidInput("token key must be bytes")
    if len(key) < MIN_TOKEN_KEY_BYTES:
        raise InvalidInput(f"token key has {len(key)} bytes; at least {MIN_TOKEN_KEY_BYTES} are required")
    digits = normalize_pan(pan)
    return hmac.digest(bytes(key), digits.encode("ascii"), "sha256").hex()

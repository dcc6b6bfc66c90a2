"""EMVCo Merchant-Presented Mode (MPM) QR codes: parse with precise errors, and build.

A payload is a run of TLV fields: a 2-digit id, a 2-digit length counted in characters
(Unicode code points), and the value. Templates (26-51 merchant accounts, 62 additional
data, 64 alternate language, 80-99 unreserved) nest the same format. The last field is the
CRC (tag 63, length 04): CRC-16/CCITT-FALSE over the UTF-8 bytes of everything up to and
including ``6304``.

:func:`parse_qr` never raises: whatever the input, it returns a :class:`QRParseResult` whose
``errors`` say what is wrong (with tag and position) and whose ``warnings`` say what was
accepted although it bends the spec. Decisions:

* Leading/trailing whitespace (a trailing newline from a scanner or shell) is stripped with
  a warning, before the CRC is computed.
* Missing merchant category code (52), name (59) or city (60), over-long names/cities, and a
  lowercase CRC are warnings: national schemes (PromptPay, VietQR) and real codes do this and
  the code still identifies the payee. Missing currency (53) or country (58) is an error.
* Payload format indicator ``02`` is a warning, not an error: genuine DuitNow (Malaysia)
  codes carry it. Any other value than ``01``/``02`` is an error.
* No merchant account (tags 02-51) at all is an error: there would be no one to pay.
"""

from __future__ import annotations

import contextvars
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tillvault.domain.countries import country_problem
from tillvault.domain.money import MAX_MINOR, currency_info, format_amount
from tillvault.errors import InvalidInput, QRCodeInvalid

__all__ = [
    "ADDITIONAL_DATA_NAMES",
    "MerchantAccount",
    "QRParseResult",
    "build_qr",
    "crc16_ccitt",
    "parse_qr",
    "require_valid_qr",
]

MAX_PAYLOAD_CHARS = 512

# Tags 02-25 are reserved for card schemes; the value is the scheme's merchant id.
_CARD_SCHEME_TAGS = {
    "02": "Visa", "03": "Visa", "04": "Mastercard", "05": "Mastercard",
    "06": "EMVCo", "07": "EMVCo", "08": "EMVCo", "09": "Discover", "10": "Discover",
    "11": "American Express", "12": "American Express", "13": "JCB", "14": "JCB",
    "15": "UnionPay", "16": "UnionPay",
}  # fmt: skip

# Globally unique identifiers (AIDs or reverse domains) of well-known schemes, by prefix.
_KNOWN_GUIS = {
    "A000000677": "PromptPay", "A000000727": "VietQR (NAPAS)", "A000000615": "DuitNow",
    "A000000524": "RuPay / Bharat QR", "A000000333": "UnionPay", "D156": "UnionPay QR (China)",
    "BR.GOV.BCB.PIX": "Pix", "SG.PAYNOW": "PayNow", "SG.COM.NETS": "NETS", "SG.SGQR": "SGQR",
    "ID.CO.QRIS": "QRIS", "HK.COM.HKICL": "FPS", "COM.P2PQRPAY": "QR Ph", "PH.PPMI": "QR Ph",
    "MY.COM.PAYNET": "DuitNow", "MX.COM.BANXICO.CODI": "CoDi", "KH.GOV.NBC.BAKONG": "KHQR",
}  # fmt: skip

#: Sub-fields that identify the merchant in the templates of schemes that put something else
#: (a bank's code, a type code, free text) in sub-field 01, by GUI prefix, most specific first.
_MERCHANT_SUBTAGS = {
    "A000000615": ("02",), "MY.COM.PAYNET": ("02",),  # DuitNow: 01 acquirer id, 02 merchant account
    "PH.PPMI": ("03", "04", "05"),  # QR Ph P2M: 01 BIC, 02 payment type, 03 merchant id
    "BR.GOV.BCB.PIX": ("01", "25"),  # Pix: 01 the key (or 25 the location); 02 is a description
    "HK.COM.HKICL": ("02", "03", "04"),  # FPS: 01 bank code; 02 FPS id, 03 mobile, 04 e-mail
    "SG.PAYNOW": ("02",),  # PayNow: 01 proxy type, 02 the proxy (mobile or UEN)
    "A000000677": ("01", "02", "03", "04"),  # PromptPay: mobile, national id, e-wallet, biller id
}  # fmt: skip

#: Schemes whose merchant is named by several sub-fields together (one alone is shared by many
#: merchants), by GUI prefix, most specific first.
_MERCHANT_SUBTAGS_TOGETHER = {
    # QR Ph P2P: 03 is the wallet provider's own id in every code of it (GCash), 04 the account.
    "COM.P2PQRPAY": ("03", "04", "05"),
    # PromptPay bill payment: 01 is the biller (K Shop's is the bank's), 02 the merchant's reference.
    "A000000677010112": ("01", "02"),
}  # fmt: skip

#: A Bakong (KHQR) account id in the GUI's place: ``name@bank``; sub-field 02 is then the bank.
_BAKONG_ACCOUNT = re.compile(r"[^@\s]+@[A-Za-z0-9]+")

#: Sub-tags of the additional data template (62) and the names results use for them.
ADDITIONAL_DATA_NAMES = {
    "01": "bill_number", "02": "mobile_number", "03": "store_label", "04": "loyalty_number",
    "05": "reference_label", "06": "customer_label", "07": "terminal_label",
    "08": "purpose_of_transaction", "09": "additional_consumer_data_request",
    "10": "merchant_tax_id", "11": "merchant_channel",
}  # fmt: skip
_ADDITIONAL_DATA_TAGS = {v: k for k, v in ADDITIONAL_DATA_NAMES.items()}
_TIP = {"01": "prompt", "02": "fixed", "03": "percentage"}
_POI = {"11": "static", "12": "dynamic"}


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) of ``data``."""
    crc = 0xFFFF
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def _crc_hex(text: str) -> str:
    return f"{crc16_ccitt(text.encode('utf-8', 'surrogatepass')):04X}"


@dataclass
class MerchantAccount:
    """One merchant account: a card-scheme tag (02-25) with a plain ``value``, or a template
    (26-51) with a globally unique identifier ``gui`` (sub-tag 00) and its other ``fields``."""

    tag: str | None = None
    gui: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    value: str | None = None
    scheme: str | None = None
    nested: dict[str, dict[str, str]] = field(default_factory=dict)

    def merchant_id_candidates(self) -> list[str]:
        """Values that may identify the merchant, most likely first: the plain value (tags
        02-25); VietQR's nested account number; for a scheme whose sub-fields are known, the
        ones that name the merchant (never the bank's code or free text: DuitNow's 01 is the
        acquirer, QR Ph's 01 the bank's BIC, Pix's 02 a description); else sub-fields 01, 02, 03."""
        if self.value is not None:
            return [self.value]
        found = [self.nested["01"]["01"]] if "01" in self.nested.get("01", {}) else []
        upper = (self.gui or "").upper()
        together = _longest_prefix(_MERCHANT_SUBTAGS_TOGETHER, upper)
        if together:
            # One candidate; two or more values joined by "/" never fit field 42, so the id is derived.
            values = [self.fields[k] for k in _MERCHANT_SUBTAGS_TOGETHER[together] if k in self.fields]
            return found + (["/".join(values)] if values else [])
        if _BAKONG_ACCOUNT.fullmatch(self.gui or ""):
            subtags: tuple[str, ...] = ("01",)  # the merchant id, if any; else the id comes from the GUI
        else:
            prefix = _longest_prefix(_MERCHANT_SUBTAGS, upper)
            subtags = _MERCHANT_SUBTAGS[prefix] if prefix else ("01", "02", "03")
        return found + [self.fields[k] for k in subtags if k in self.fields]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``tag``, ``gui``, ``fields`` and, where known, ``scheme``."""
        out: dict[str, Any] = {"tag": self.tag, "gui": self.gui, "fields": dict(self.fields)}
        out["scheme"] = self.scheme
        if self.value is not None:
            out["value"] = self.value
        if self.nested:
            out["nested"] = {k: dict(v) for k, v in self.nested.items()}
        return out


def _longest_prefix(table: Mapping[str, Any], upper: str) -> str | None:
    return max((p for p in table if upper.startswith(p)), key=len, default=None)


@dataclass
class QRParseResult:
    """What :func:`parse_qr` found. ``valid`` is true exactly when ``errors`` is empty."""

    valid: bool = False
    crc_ok: bool = False
    payload_format: str | None = None
    point_of_initiation: str | None = None
    merchant_name: str | None = None
    merchant_city: str | None = None
    country: str | None = None
    currency: str | None = None
    currency_numeric: str | None = None
    mcc: str | None = None
    amount: str | None = None
    amount_minor: int | None = None
    tip: dict[str, str] | None = None
    postal_code: str | None = None
    accounts: list[MerchantAccount] = field(default_factory=list)
    additional_data: dict[str, str] = field(default_factory=dict)
    alternate_language: dict[str, str] | None = None
    unreserved: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``tillvault qr parse --json`` plus details (tags, extra data)."""
        return {
            "valid": self.valid,
            "crc_ok": self.crc_ok,
            "merchant_name": self.merchant_name,
            "merchant_city": self.merchant_city,
            "country": self.country,
            "currency": self.currency,
            "mcc": self.mcc,
            "amount": self.amount,
            "point_of_initiation": self.point_of_initiation,
            "accounts": [a.to_dict() for a in self.accounts],
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "payload_format": self.payload_format,
            "currency_numeric": self.currency_numeric,
            "amount_minor": self.amount_minor,
            "tip": dict(self.tip) if self.tip else None,
            "postal_code": self.postal_code,
            "additional_data": dict(self.additional_data),
            "alternate_language": dict(self.alternate_language) if self.alternate_language else None,
            "unreserved": dict(self.unreserved),
            "tags": dict(self.tags),
        }


@dataclass
class _Field:
    tag: str
    value: str
    pos: int  # absolute position of the tag id in the payload (0-based, in characters)


#: Invisible characters that reorder displayed text (a name could show as another one's).
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    # ... and invisible ones: zero width space, word joiner and invisible operators, line and
    # paragraph separators, byte order mark (ZWJ and ZWNJ stay: scripts and emoji need them).
    "\u200b\u2060\u2061\u2062\u2063\u2064\u2028\u2029\ufeff"
)


def control_character(text: str) -> str | None:
    """The first control character in ``text`` (C0, DEL, C1, a surrogate, a bidirectional
    override or an invisible separator), or None. A merchant name reaches receipts, printers and screens: an ESC there
    is a printer command, an override reverses what the customer reads."""
    for ch in text:
        if ch < " " or "\x7f" <= ch <= "\x9f" or ch in _BIDI_CONTROLS or "\ud800" <= ch <= "\udfff":
            return ch
    return None


#: True while a payload is read a second way, its lengths counting UTF-8 bytes (see :func:`parse_qr`).
_COUNT_BYTES: contextvars.ContextVar[bool] = contextvars.ContextVar("emvqr_count_bytes", default=False)
#: True while a broken payload is read again with one length mended (see :func:`_length_hint`).
_HINTING: contextvars.ContextVar[bool] = contextvars.ContextVar("emvqr_hinting", default=False)


def _split(text: str, base: int, where: str, errors: list[str]) -> tuple[list[_Field], bool]:
    """Cut ``text`` into TLV fields. ``where`` is "" at the root or "tag NN" inside a template.

    :returns: the fields read and whether the whole text was consumed without a problem.
    """
    if _COUNT_BYTES.get() and not text.isascii():
        return _split_bytes(text, base, where, errors)
    fields: list[_Field] = []
    i, n = 0, len(text)
    word = "sub-tag" if where else "tag"
    head = f"{where}: " if where else ""

    def fail(message: str) -> tuple[list[_Field], bool]:
        if not where and fields and fields[-1].tag == "63":  # not a field: text after the CRC
            message = (
                f"tag 63: {n - i} character(s) after the CRC field, from position {base + i} "
                f"({text[i : i + 12]!r}): the CRC must end the payload"
            )
        errors.append(message)
        return fields, False

    while i < n:
        pos = base + i
        if n - i < 4:
            return fail(
                f"{head}truncated at position {pos}: {n - i} character(s) left, "
                f"a {word} needs at least 4 (2-digit id and 2-digit length){_suspect(fields)}"
            )
        tag, length = text[i : i + 2], text[i + 2 : i + 4]
        if not (tag.isascii() and tag.isdigit()):
            return fail(f"{head}position {pos}: {word} id {tag!r} is not two digits{_suspect(fields)}")
        if not (length.isascii() and length.isdigit()):
            return fail(
                f"{head}position {pos}: {word} {tag} has length {length!r}, which is not two digits{_suspect(fields)}"
            )
        size, left = int(length), n - i - 4
        if size > left:
            return fail(
                f"{head}truncated at position {pos}: {word} {tag} declares length {size} "
                f"but {left} character{'s remain' if left != 1 else ' remains'}{_suspect(fields)}"
            )
        fields.append(_Field(tag, text[i + 4 : i + 4 + size], pos))
        i += 4 + size
    return fields, True


def _split_bytes(text: str, base: int, where: str, errors: list[str]) -> tuple[list[_Field], bool]:
    """:func:`_split` for a generator that counted UTF-8 bytes: lengths in bytes, positions
    still in characters. A length that ends inside a character is a failure of this reading."""
    data = text.encode("utf-8")
    fields: list[_Field] = []
    i, n = 0, len(data)
    while i < n:
        pos = base + len(data[:i].decode("utf-8"))
        head = data[i : i + 4]
        if n - i < 4 or not (head.isascii() and head.isdigit()):
            errors.append(f"{where or 'payload'}: not TLV when lengths count bytes, at position {pos}")
            return fields, False
        tag, size = head[:2].decode(), int(head[2:])
        if size > n - i - 4:
            errors.append(f"{where or 'payload'}: tag {tag} runs past the end when lengths count bytes")
            return fields, False
        try:
            value = data[i + 4 : i + 4 + size].decode("utf-8")
        except UnicodeDecodeError:
            errors.append(f"{where or 'payload'}: tag {tag} ends inside a character when lengths count bytes")
            return fields, False
        fields.append(_Field(tag, value, pos))
        i += 4 + size
    return fields, True


def _suspect(fields: list[_Field]) -> str:
    """Where a cut-short payload most likely went wrong: the length of the field read last."""
    if not fields:
        return ""
    last = fields[-1]
    return f" (a wrong length earlier? tag {last.tag} at position {last.pos} declared {len(last.value)})"


_TEMPLATE_TAGS = frozenset([f"{t:02d}" for t in range(26, 52)] + ["62", "64"])


def _opaque_account(f: _Field) -> bool:
    """A merchant account (26-51) that is one value, not sub-fields: it does not open with the
    identifier sub-field (``00`` and a length) and does not read as sub-fields either (Peru's
    Yape: a bare 32-hex id)."""
    return (
        "26" <= f.tag <= "51"
        and not re.match(r"00[0-9]{2}", f.value)
        and not _split(f.value, f.pos + 4, f"tag {f.tag}", [])[1]
    )


def _breaks_inside(f: _Field) -> bool:
    """A template whose sub-fields start well but do not fill it (an opaque account does not count)."""
    if f.tag not in _TEMPLATE_TAGS or _opaque_account(f):
        return False
    subs, complete = _split(f.value, 0, "tag", [])
    return not complete and bool(subs)


def _length_hint(payload: str, fields: list[_Field]) -> str | None:
    """For a payload whose structure is broken: the one declared length (of a field, or of a
    sub-field of a template that does not split) that, changed by up to 3, makes the whole code
    read as valid, its CRC aside (the CRC was computed over the wrong length)."""
    spots: list[tuple[str, int, int]] = []  # (what, position of the 2 length digits, declared)
    for f in fields:
        if f.tag == "63":
            break
        spots.append((f"tag {f.tag}", f.pos + 2, len(f.value)))
        if _breaks_inside(f):
            subs, _ = _split(f.value, f.pos + 4, f"tag {f.tag}", [])
            spots += [(f"tag {f.tag}: sub-tag {x.tag}", x.pos + 2, len(x.value)) for x in subs]
    token = _HINTING.set(True)
    try:
        for what, at, declared in spots:
            for delta in (1, -1, 2, -2, 3, -3):
                size = declared + delta
                if not 0 <= size <= 99:
                    continue
                trial = QRParseResult()
                _parse_payload(payload[:at] + f"{size:02d}" + payload[at + 2 :], trial)
                if "63" in trial.tags and all(e.startswith("tag 63: CRC is") for e in trial.errors):
                    return (
                        f"{what}: the declared length {declared:02d} at position {at} looks wrong: "
                        f"read as {size:02d}, the rest of the code is whole and valid"
                    )
    finally:
        _HINTING.reset(token)
    return None


def _template(outer: _Field, errors: list[str], warnings: list[str]) -> dict[str, str]:
    """Parse a template field into {sub-tag: value}; report structure and duplicate problems."""
    subs, _ = _split(outer.value, outer.pos + 4, f"tag {outer.tag}", errors)
    out: dict[str, str] = {}
    for sub in subs:
        if sub.tag in out:
            errors.append(f"tag {outer.tag}: sub-tag {sub.tag} appears twice (again at position {sub.pos})")
            continue
        if sub.value == "":
            warnings.append(f"tag {outer.tag}: sub-tag {sub.tag} is empty (length 00)")
        out[sub.tag] = sub.value
    return out


def _scheme_for_gui(gui: str | None) -> str | None:
    if not gui:
        return None
    if _BAKONG_ACCOUNT.fullmatch(gui):
        return "KHQR"
    best = _longest_prefix(_KNOWN_GUIS, gui.upper())
    return _KNOWN_GUIS[best] if best else None


_DECIMAL = re.compile(r"[0-9]*\.?[0-9]*")


def _amount_problem(value: str) -> str | None:
    if len(value) > 13:
        return f"has {len(value)} characters; at most 13"
    if not value or not _DECIMAL.fullmatch(value) or not any(c.isdigit() for c in value):
        return "is not a decimal number (digits and at most one '.')"
    return None


def _parse_amount(res: QRParseResult, f: _Field) -> None:
    problem = _amount_problem(f.value)
    if problem:
        res.errors.append(f"tag 54: amount {f.value!r} {problem}")
        return
    whole, _, frac = f.value.partition(".")
    exp = currency_info(res.currency).exponent if res.currency else None
    if exp is not None and len(frac) > exp:
        res.errors.append(
            f"tag 54: amount {f.value} has {len(frac)} decimal{'s' if len(frac) != 1 else ''}; "
            f"{res.currency} allows {exp}"
        )
        return
    res.amount = f.value  # only an amount that is usable as it stands
    if exp is not None:
        res.amount_minor = int(whole or "0") * 10**exp + int(frac.ljust(exp, "0") or "0")
        if res.amount_minor == 0:
            res.warnings.append("tag 54: amount is zero")


def _parse_account(f: _Field, res: QRParseResult) -> None:
    if int(f.tag) <= 25:
        scheme = _CARD_SCHEME_TAGS.get(f.tag, "EMVCo reserved")
        res.accounts.append(MerchantAccount(tag=f.tag, value=f.value, scheme=scheme))
        return
    if _opaque_account(f):
        # Not sub-fields at all (Peru's Yape puts a bare 32-hex id here): kept whole, as tags 80-99 are.
        res.warnings.append(
            f"tag {f.tag}: merchant account is not a template of sub-fields (no globally unique "
            "identifier, sub-tag 00); kept as one value"
        )
        res.accounts.append(MerchantAccount(tag=f.tag, value=f.value))
        return
    subs = _template(f, res.errors, res.warnings)
    gui = subs.pop("00", None)
    if gui is None:
        res.errors.append(f"tag {f.tag}: sub-tag 00 (globally unique identifier) missing")
    elif len(gui) > 32:
        res.warnings.append(f"tag {f.tag}: globally unique identifier has {len(gui)} characters; at most 32")
    account = MerchantAccount(tag=f.tag, gui=gui, fields=subs, scheme=_scheme_for_gui(gui))
    if gui and gui.upper().startswith("A000000727") and "01" in subs:
        # VietQR nests the beneficiary (bank BIN 00, account/card 01) inside sub-tag 01.
        nested_errors: list[str] = []
        inner = _template(_Field("01", subs["01"], f.pos), nested_errors, [])
        if not nested_errors:
            account.nested["01"] = inner
    res.accounts.append(account)


def _parse_additional(f: _Field, res: QRParseResult) -> None:
    for sub, value in _template(f, res.errors, res.warnings).items():
        name = ADDITIONAL_DATA_NAMES.get(sub, sub)
        res.additional_data[name] = value
        if "01" <= sub <= "08" and len(value) > 25:
            res.warnings.append(f"tag 62: sub-tag {sub} ({name}) has {len(value)} characters; at most 25")
        if sub == "09" and not re.fullmatch(r"(?!.*(.).*\1)[AME]{1,3}", value):
            res.warnings.append(f"tag 62: sub-tag 09 {value!r} should be letters A, M, E, each at most once")


def _parse_language(f: _Field, res: QRParseResult) -> None:
    subs = _template(f, res.errors, res.warnings)
    lang = subs.get("00")
    if lang is None:
        res.errors.append("tag 64: sub-tag 00 (language preference) missing")
    elif not re.fullmatch(r"[A-Za-z]{2}", lang):
        res.errors.append(f"tag 64: language {lang!r} is not a 2-letter ISO 639-1 code")
    if "01" not in subs:
        res.errors.append("tag 64: sub-tag 01 (merchant name, alternate language) missing")
    elif len(subs["01"]) > 25:
        res.warnings.append(f"tag 64: alternate merchant name has {len(subs['01'])} characters; at most 25")
    if len(subs.get("02", "")) > 15:
        res.warnings.append(f"tag 64: alternate merchant city has {len(subs['02'])} characters; at most 15")
    alt = {"language": lang or "", "name": subs.get("01", "")}
    if "02" in subs:
        alt["city"] = subs["02"]
    res.alternate_language = alt


def _check_crc(text: str, fields: list[_Field], complete: bool, seen: dict[str, _Field], res: QRParseResult) -> None:
    crc = seen.get("63")
    if crc is None:
        tail = re.search(r"6304([0-9A-Fa-f]{4})\Z", text)
        if tail and not complete:  # structure is broken earlier, but the CRC can still be judged
            expected = _crc_hex(text[:-4])
            res.crc_ok = tail.group(1).upper() == expected
            if not res.crc_ok:
                res.errors.append(f"tag 63: CRC is {tail.group(1).upper()}, expected {expected}")
        elif complete and tail and fields:
            last = fields[-1]  # the CRC field was swallowed by the field before it
            res.errors.append(
                f"tag {last.tag}: declared length {len(last.value)} at position {last.pos} runs to the end of "
                f"the payload, taking in the CRC field 6304{tail.group(1)} (the length is wrong)"
            )
        elif complete:
            res.errors.append("tag 63: missing (the payload must end with the CRC field 6304XXXX)")
        return
    if complete and fields[-1] is not crc:
        res.errors.append(f"tag 63: must be the last field (found at position {crc.pos})")
    if len(crc.value) != 4:
        res.errors.append(f"tag 63: length must be 04, found {len(crc.value):02d}")
        return
    if not re.fullmatch(r"[0-9A-Fa-f]{4}", crc.value):
        res.errors.append(f"tag 63: CRC {crc.value!r} is not 4 hex digits")
        return
    expected = _crc_hex(text[: crc.pos + 4])
    res.crc_ok = crc.value.upper() == expected
    if not res.crc_ok:
        res.errors.append(f"tag 63: CRC is {crc.value.upper()}, expected {expected}")
    elif crc.value != crc.value.upper():
        res.warnings.append(f"tag 63: CRC {crc.value} is lowercase; accepted (EMVCo writes {expected})")


#: A URI scheme ("https:", "upi:", "qpaywallet:"): a link, which an EMV payload (digits first) never starts with.
_LINK = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def _clean(text: Any, res: QRParseResult) -> str | None:
    """Turn the input into the text to parse, or report why it cannot be."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            res.errors.append(f"payload is not valid UTF-8 (byte {exc.start})")
            return None
    if not isinstance(text, str):
        res.errors.append(f"payload must be text, not {type(text).__name__}")
        return None
    stripped = text.strip().strip("\ufeff").strip()
    if stripped != text:
        lead = len(text) - len(text.lstrip().lstrip("\ufeff").lstrip())
        what = "a trailing newline" if text.endswith("\n") and lead == 0 else "surrounding whitespace"
        if "\ufeff" in text and "\ufeff" not in stripped:
            what = "a byte order mark" if len(text) - len(stripped) == 1 else f"a byte order mark and {what}"
        res.warnings.append(f"removed {what} ({len(text) - len(stripped)} character(s)) before parsing")
    if not stripped:
        res.errors.append("payload is empty")
        return None
    for i, ch in enumerate(stripped):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            res.errors.append(
                f"position {i}: unpaired surrogate U+{ord(ch):04X} (not valid Unicode: "
                "bytes that were not UTF-8 were read as text?)"
            )
            return None  # every later check (the CRC over UTF-8 bytes) would be wrong
    link = _LINK.match(stripped)
    if link:
        inner = stripped.find("000201")
        where = (
            f"; the EMV payload inside starts at position {inner} ('000201...'): give only the payload"
            if inner > 0
            else ""
        )
        res.errors.append(f"payload is a link ({link.group(0)}...), not an EMV merchant QR payload{where}")
        return None
    if len(stripped) > MAX_PAYLOAD_CHARS:
        res.warnings.append(f"payload has {len(stripped)} characters; EMVCo allows at most {MAX_PAYLOAD_CHARS}")
    return stripped


def _check_root_order(fields: list[_Field], seen: dict[str, _Field], res: QRParseResult) -> None:
    pfi = seen.get("00")
    if pfi is None:
        res.errors.append("tag 00: missing (payload format indicator)")
        return
    if fields[0] is not pfi:
        res.errors.append(f"tag 00: must be the first field (found at position {pfi.pos})")
    res.payload_format = pfi.value
    if pfi.value == "02":
        res.warnings.append("tag 00: payload format indicator is '02', the spec says '01' (accepted, as on DuitNow)")
    elif pfi.value != "01":
        res.errors.append(f"tag 00: payload format indicator is {pfi.value!r}, expected '01'")


def _parse_fields(seen: dict[str, _Field], res: QRParseResult) -> None:
    for tag, f in seen.items():
        v = f.value
        if "02" <= tag <= "51":
            _parse_account(f, res)
        elif tag == "01":
            res.point_of_initiation = _POI.get(v)
            if res.point_of_initiation is None:
                res.errors.append(f"tag 01: point of initiation {v!r} is not 11 (static) or 12 (dynamic)")
        elif tag == "52":
            res.mcc = v
            if not re.fullmatch(r"[0-9]{4}", v):
                res.errors.append(f"tag 52: merchant category code {v!r} is not 4 digits")
        elif tag == "58":
            res.country = v
            if not re.fullmatch(r"[A-Z]{2}", v):
                res.errors.append(f"tag 58: country {v!r} is not 2 capital letters (ISO 3166-1 alpha-2)")
            elif problem := country_problem(v):
                res.errors.append(f"tag 58: country {v!r} {problem}")
        elif tag in ("59", "60"):
            label, limit = ("merchant name", 25) if tag == "59" else ("merchant city", 15)
            if tag == "59":
                res.merchant_name = v
            else:
                res.merchant_city = v
            if len(v) > limit:
                res.warnings.append(f"tag {tag}: {label} has {len(v)} characters; EMVCo allows {limit}")
            elif not v.strip():
                need = "--merchant-name" if tag == "59" else "--merchant-city"
                verb = "needs" if tag == "59" else "takes"
                res.warnings.append(f"tag {tag}: {label} is blank; a terminal set up from this code {verb} {need}")
        elif tag == "61":
            res.postal_code = v
            if len(v) > 10:
                res.warnings.append(f"tag 61: postal code has {len(v)} characters; at most 10")
        elif tag == "62":
            _parse_additional(f, res)
        elif tag == "64":
            _parse_language(f, res)
        elif "65" <= tag <= "79":
            res.warnings.append(f"tag {tag}: reserved for future use by EMVCo (kept as is)")
        elif tag >= "80":
            inner: list[str] = []
            subs, complete = _split(v, f.pos + 4, f"tag {tag}", inner)
            res.unreserved[tag] = {s.tag: s.value for s in subs} if complete and subs else v


def _check_currency_and_tip(seen: dict[str, _Field], complete: bool, res: QRParseResult) -> None:
    cur = seen.get("53")
    if cur is None:
        if complete:
            res.errors.append("tag 53: missing (transaction currency)")
    elif not re.fullmatch(r"[0-9]{3}", cur.value):
        res.errors.append(f"tag 53: currency {cur.value!r} is not 3 digits (ISO 4217 numeric)")
    else:
        res.currency_numeric = cur.value
        try:
            res.currency = currency_info(cur.value).alpha
        except InvalidInput:
            res.errors.append(f"tag 53: currency {cur.value} is not an ISO 4217 code")
    if "54" in seen:
        _parse_amount(res, seen["54"])
    tip = seen.get("55")
    fixed, pct = seen.get("56"), seen.get("57")
    if tip is not None:
        kind = _TIP.get(tip.value)
        if kind is None:
            res.errors.append(f"tag 55: tip indicator {tip.value!r} is not 01, 02 or 03")
        else:
            res.tip = {"indicator": kind}
            if kind == "fixed":
                if fixed is None:
                    res.errors.append("tag 56: missing (tag 55 = 02 needs a fixed convenience fee)")
                elif problem := _amount_problem(fixed.value):
                    res.errors.append(f"tag 56: fee {fixed.value!r} {problem}")
                else:
                    res.tip["fixed"] = fixed.value
            if kind == "percentage":
                if pct is None:
                    res.errors.append("tag 57: missing (tag 55 = 03 needs a percentage fee)")
                elif not re.fullmatch(r"[0-9]{1,2}(\.[0-9]{1,2})?", pct.value) or float(pct.value) <= 0:
                    res.errors.append(f"tag 57: percentage {pct.value!r} is not between 00.01 and 99.99")
                else:
                    res.tip["percentage"] = pct.value
    for f, need in ((fixed, "02"), (pct, "03")):
        if f is not None and (tip is None or tip.value != need):
            res.warnings.append(f"tag {f.tag}: present although tag 55 is not {need}; ignored")


def parse_qr(text: Any) -> QRParseResult:
    """Parse an EMVCo merchant-presented QR payload; never raises, whatever ``text`` is.

    ``text`` is the decoded QR content (``str``; UTF-8 ``bytes`` are accepted too). Lengths are
    counted in characters (code points), as EMVCo specifies; a code whose generator counted
    UTF-8 bytes instead is read that way, with a warning, where only that reading is whole and
    valid or the character reading would put one field inside another. The CRC covers the UTF-8 bytes.

    :returns: a :class:`QRParseResult` with ``valid`` true only if ``errors`` is empty.
    """
    res = QRParseResult()
    try:
        payload = _clean(text, res)
        if payload is not None:
            _parse_payload(payload, res)
            if not payload.isascii():
                res = _maybe_byte_lengths(text, payload, res)
    except Exception as exc:  # a parser bug must not crash a sale; report it instead
        res.errors.append(f"internal error while parsing: {type(exc).__name__}")
    res.valid = not res.errors
    return res


def _maybe_byte_lengths(text: Any, payload: str, by_chars: QRParseResult) -> QRParseResult:
    """The payload read again with lengths in UTF-8 bytes, where that is the better reading.

    EMVCo counts characters, but some generators count the bytes of a non-ASCII name. Read by
    characters, such a code is then broken, or reads as valid with the next field inside the
    name ("张三便利店6006Sydney", no city). The byte reading is taken, with a warning, when the
    character reading is broken and the byte reading whole and valid; or when both are valid
    but the byte reading finds, with a value, a name, city or category the character reading
    lacked, and adds nothing but such root fields. A valid code that counts characters can read
    validly by bytes too ("北京 2000" gives "北京 " and an empty tag 20): that never switches.
    """
    by_bytes = QRParseResult()
    _clean(text, by_bytes)  # the same clean-up warnings
    token = _COUNT_BYTES.set(True)
    try:
        _parse_payload(payload, by_bytes)
    finally:
        _COUNT_BYTES.reset(token)
    if by_bytes.errors or by_bytes.tags == by_chars.tags:
        return by_chars
    if not by_chars.errors:
        new = {t: v for t, v in by_bytes.tags.items() if t not in by_chars.tags}
        fills_a_gap = any(t in ("52", "59", "60") for t in new)
        if not fills_a_gap or not all("52" <= t <= "64" and v.strip() for t, v in new.items()):
            return by_chars
    by_bytes.warnings.append(
        "field lengths count UTF-8 bytes, not characters as EMVCo specifies; read that way (the app that "
        "made this code should count characters)"
    )
    return by_bytes


def _parse_payload(payload: str, res: QRParseResult) -> None:
    # A line break inside the code (wrapped when it was copied) is the cause of every structure
    # error after it: it is named first.
    breaks = [i for i, ch in enumerate(payload) if ch in "\r\n"]
    if breaks:
        res.errors.append(
            f"position {breaks[0]}: a line break inside the payload (U+{ord(payload[breaks[0]]):04X}); "
            "was the code wrapped when it was copied? A QR payload is one line"
        )
    fields, complete = _split(payload, 0, "", res.errors)
    seen: dict[str, _Field] = {}
    for f in fields:
        if f.tag in seen:
            res.errors.append(f"tag {f.tag}: duplicate (first at position {seen[f.tag].pos}, again at {f.pos})")
            continue
        seen[f.tag] = f
        res.tags[f.tag] = f.value
        bad = control_character(f.value)
        if bad is not None:
            where = f.pos + 4 + f.value.index(bad)
            if where not in breaks:  # already named
                res.errors.append(f"tag {f.tag}: control character U+{ord(bad):04X} at position {where} (not text)")
    _check_crc(payload, fields, complete, seen, res)
    if fields:
        _check_root_order(fields, seen, res)
    _check_currency_and_tip(seen, complete, res)
    _parse_fields(seen, res)
    if not _COUNT_BYTES.get() and not _HINTING.get() and (not complete or any(_breaks_inside(f) for f in fields)):
        # One wrong length garbles every field after it: the length to mend is named first.
        hint = _length_hint(payload, fields)
        if hint:
            res.errors.insert(1 if breaks else 0, hint)
    if not complete:
        return  # the checks below would only repeat that the payload is cut short
    if not res.accounts:
        res.errors.append("no merchant account information (tags 02-51): the code names no one to pay")
    if "58" not in seen:
        res.errors.append("tag 58: missing (country code)")
    for tag, label in (("52", "merchant category code"), ("59", "merchant name"), ("60", "merchant city")):
        if tag not in seen:
            need = {"52": "--mcc", "59": "--merchant-name", "60": "--merchant-city"}[tag]
            res.warnings.append(
                f"tag {tag}: missing ({label}); some national schemes omit it (a terminal set up from it takes {need})"
            )


def require_valid_qr(text: Any) -> QRParseResult:
    """Parse like :func:`parse_qr` and insist that the code is valid.

    :raises QRCodeInvalid: carrying every error; the message is the first one (and a count).
    """
    res = parse_qr(text)
    if not res.valid:
        more = f" (and {len(res.errors) - 1} more)" if len(res.errors) > 1 else ""
        raise QRCodeInvalid(f"merchant QR code is invalid: {res.errors[0]}{more}", list(res.errors))
    return res


# --- building -------------------------------------------------------------------------------


def _tlv(tag: str, value: str, what: str) -> str:
    if value == "":
        raise InvalidInput(f"{what} is empty")
    if len(value) > 99:
        raise InvalidInput(f"{what} has {len(value)} characters; a field holds at most 99")
    return f"{tag}{len(value):02d}{value}"


def _text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} is required")
    if len(value) > limit:
        raise InvalidInput(f"{what} has {len(value)} characters; EMVCo allows at most {limit}")
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cs", "Cn")), None)
    if bad is not None:
        raise InvalidInput(f"{what} contains the control or invalid character U+{ord(bad):04X}")
    return value


def _subtag(key: str, what: str) -> str:
    if not re.fullmatch(r"[0-9]{2}", key):
        raise InvalidInput(f"{what}: sub-tag {key!r} is not two digits")
    return key


def _account_tlv(acc: MerchantAccount | Mapping[str, Any], free: list[str]) -> tuple[str, str]:
    if isinstance(acc, MerchantAccount):
        a = acc
    else:
        try:
            a = MerchantAccount(**dict(acc))
        except TypeError as exc:
            raise InvalidInput(f"merchant account {dict(acc)!r}: use the keys tag, gui, fields, value") from exc
    if a.value is not None:
        if a.tag is None or not re.fullmatch(r"0[2-9]|[1-4][0-9]|5[01]", a.tag):
            raise InvalidInput("an account with a plain value needs a tag from 02 to 51")
        _text(a.value, f"account tag {a.tag}", 99)
        return a.tag, _tlv(a.tag, a.value, f"account tag {a.tag}")
    tag = a.tag or (free.pop(0) if free else "")
    if not re.fullmatch(r"2[6-9]|[34][0-9]|5[01]", tag):
        raise InvalidInput(f"merchant account template tag {tag!r} is not between 26 and 51")
    if tag in free:
        free.remove(tag)
    gui = _text(a.gui, f"account tag {tag}: globally unique identifier", 32)
    inner = _tlv("00", gui, f"account tag {tag} GUI")
    for key in sorted(a.fields):
        if _subtag(key, f"account tag {tag}") == "00":
            raise InvalidInput(f"account tag {tag}: sub-tag 00 is the GUI; pass it as gui")
        inner += _tlv(key, _text(a.fields[key], f"account tag {tag} sub-tag {key}", 99), f"tag {tag}.{key}")
    return tag, _tlv(tag, inner, f"account tag {tag}")


def build_qr(
    *,
    name: str,
    city: str,
    country: str,
    currency: str | int,
    mcc: str,
    accounts: Sequence[MerchantAccount | Mapping[str, Any]],
    amount: int | None = None,
    point_of_initiation: str | None = None,
    postal_code: str | None = None,
    additional_data: Mapping[str, str] | None = None,
    alternate_language: Mapping[str, str] | None = None,
) -> str:
    """Build an EMVCo MPM payload with a correct CRC; ``parse_qr`` of the result is valid.

    ``amount`` is in minor units of ``currency`` (alpha or numeric); omit it for a static code.
    ``point_of_initiation`` is ``"static"``/``"dynamic"`` (default: dynamic iff an amount is
    given). ``accounts`` are :class:`MerchantAccount` objects or dicts with ``gui`` and
    ``fields`` (tags 26-51, assigned in order when not given) or ``tag`` and ``value`` (02-25).
    ``additional_data`` keys are names from :data:`ADDITIONAL_DATA_NAMES` or 2-digit sub-tags;
    ``alternate_language`` has ``language``, ``name`` and optionally ``city``. Lengths are
    counted in characters, so ``北京朝阳区张三便利店`` is a 10-character name.

    :raises InvalidInput: a field is missing, too long, malformed, or the payload exceeds 512
        characters (the message names the field).
    """
    cur = currency_info(currency)
    if not re.fullmatch(r"[0-9]{4}", str(mcc)):
        raise InvalidInput(f"merchant category code {mcc!r} is not 4 digits")
    if not isinstance(country, str) or not re.fullmatch(r"[A-Z]{2}", country):
        raise InvalidInput(f"country {country!r} is not 2 capital letters (ISO 3166-1 alpha-2)")
    if problem := country_problem(country):
        raise InvalidInput(f"country {country!r} {problem}")
    poi = point_of_initiation or ("dynamic" if amount is not None else "static")
    poi_code = {"static": "11", "dynamic": "12", "11": "11", "12": "12"}.get(poi)
    if poi_code is None:
        raise InvalidInput(f"point of initiation {poi!r} is not 'static' or 'dynamic'")
    if not accounts:
        raise InvalidInput("at least one merchant account is required")
    explicit = {a.tag if isinstance(a, MerchantAccount) else a.get("tag") for a in accounts}
    free = [f"{t:02d}" for t in range(26, 52) if f"{t:02d}" not in explicit]
    built: dict[str, str] = {}
    for acc in accounts:
        tag, tlv = _account_tlv(acc, free)
        if tag in built:
            raise InvalidInput(f"two merchant accounts use tag {tag}")
        built[tag] = tlv
    out = "000201" + _tlv("01", poi_code, "point of initiation")
    out += "".join(built[t] for t in sorted(built))
    out += _tlv("52", str(mcc), "MCC") + _tlv("53", cur.numeric, "currency")
    if amount is not None:
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_MINOR:
            raise InvalidInput(f"amount must be a non-negative int of minor units, not {amount!r}")
        text = format_amount(amount, cur)
        if len(text) > 13:
            raise InvalidInput(f"amount {text} {cur.alpha} has {len(text)} characters; EMVCo allows 13")
        out += _tlv("54", text, "amount")
    out += _tlv("58", country, "country")
    out += _tlv("59", _text(name, "merchant name", 25), "merchant name")
    out += _tlv("60", _text(city, "merchant city", 15), "merchant city")
    if postal_code:
        out += _tlv("61", _text(postal_code, "postal code", 10), "postal code")
    if additional_data:
        inner = ""
        by_tag = {_subtag(_ADDITIONAL_DATA_TAGS.get(k, k), "additional data"): v for k, v in additional_data.items()}
        for key in sorted(by_tag):
            limit = 25 if "01" <= key <= "08" else 99
            what = f"additional data {ADDITIONAL_DATA_NAMES.get(key, key)}"
            inner += _tlv(key, _text(by_tag[key], what, limit), what)
        out += _tlv("62", inner, "additional data template")
    if alternate_language:
        alt = dict(alternate_language)
        lang = alt.get("language", "")
        if not re.fullmatch(r"[A-Za-z]{2}", lang):
            raise InvalidInput(f"alternate language {lang!r} is not a 2-letter ISO 639-1 code")
        inner = _tlv("00", lang, "language") + _tlv("01", _text(alt.get("name"), "alternate name", 25), "name")
        if alt.get("city"):
            inner += _tlv("02", _text(alt["city"], "alternate city", 15), "alternate city")
        out += _tlv("64", inner, "alternate language template")
    out += "6304"
    out += _crc_hex(out)
    if len(out) > MAX_PAYLOAD_CHARS:
        raise InvalidInput(f"payload has {len(out)} characters; EMVCo allows at most {MAX_PAYLOAD_CHARS}")
    return out

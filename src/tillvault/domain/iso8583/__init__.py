"""The ISO 8583 dialect TillVault speaks: the field spec, message builders, encode and decode.

Three modules: ``spec`` (message types, codes, the fields and their value checks), and on it
``codec`` (encode, decode, salvage) and ``messages`` (the builders and helpers). Import from
here; the private names re-exported below are for the tests.

Pure: no I/O. Messages are plain ``dict[str, str]``: the key ``"t"`` holds the MTI and the
keys ``"2"`` .. ``"128"`` hold field values as text, exactly as they travel (fixed fields at
their full width). Amounts given to builders are ``int`` minor units; the currency is the
ISO 4217 numeric code as a string (``"156"``). ``docs/iso8583.md`` documents every field.

Wire form: ISO 8583:1987, ASCII throughout, the bitmaps as 16 uppercase hexadecimal
characters (readable in logs, and the whole message stays printable), variable fields with
ASCII ``LL`` / ``LLL`` length prefixes. Decoding is strict: only the fields below, each checked
against its type, and the bytes must be the canonical encoding of what they decode to.
Every failure raises :class:`~tillvault.errors.MessageError` and nothing else.
"""

from __future__ import annotations

from tillvault.domain.iso8583.codec import _DECODE_LAYOUTS as _DECODE_LAYOUTS
from tillvault.domain.iso8583.codec import _ENCODE_LAYOUTS as _ENCODE_LAYOUTS
from tillvault.domain.iso8583.codec import _LAYOUT_CACHE_SIZE as _LAYOUT_CACHE_SIZE
from tillvault.domain.iso8583.codec import _decode_canonical as _decode_canonical
from tillvault.domain.iso8583.codec import _decode_checked as _decode_checked
from tillvault.domain.iso8583.codec import _encode_checked as _encode_checked
from tillvault.domain.iso8583.codec import (
    decode,
    encode,
    salvage,
)
from tillvault.domain.iso8583.messages import (
    BatchTotals,
    CardArgs,
    advice_request,
    batch_upload_request,
    echo_request,
    field_int,
    is_approved,
    mask_pan,
    missing_fields,
    redacted,
    refund_request,
    response_for,
    response_mti,
    response_text,
    reversal_request,
    sale_request,
    settlement_request,
    sign_off_request,
    sign_on_request,
    terminal_id_field,
    void_request,
)
from tillvault.domain.iso8583.spec import _DATA_FIELDS as _DATA_FIELDS
from tillvault.domain.iso8583.spec import _FIELDS as _FIELDS
from tillvault.domain.iso8583.spec import _HEX16 as _HEX16
from tillvault.domain.iso8583.spec import _RESPONSE_MTIS as _RESPONSE_MTIS
from tillvault.domain.iso8583.spec import _VALID as _VALID
from tillvault.domain.iso8583.spec import (
    ECHO,
    MTI_ADVICE,
    MTI_BATCH_UPLOAD,
    MTI_FINANCIAL,
    MTI_NETWORK,
    MTI_REVERSAL,
    MTI_REVERSAL_REPEAT,
    MTI_SETTLEMENT,
    PROC_REFUND,
    PROC_SALE,
    PROC_SETTLE_AFTER_UPLOAD,
    PROC_SETTLE_FIRST,
    PROC_VOID,
    REQUEST_MTIS,
    REQUIRED_FIELDS,
    RESPONSE_CODES,
    SIGN_OFF,
    SIGN_ON,
    SPEC,
)
from tillvault.domain.iso8583.spec import _check_mti as _check_mti
from tillvault.domain.iso8583.spec import _check_value as _check_value

__all__ = [
    "ECHO",
    "MTI_ADVICE",
    "MTI_BATCH_UPLOAD",
    "MTI_FINANCIAL",
    "MTI_NETWORK",
    "MTI_REVERSAL",
    "MTI_REVERSAL_REPEAT",
    "MTI_SETTLEMENT",
    "PROC_REFUND",
    "PROC_SALE",
    "PROC_SETTLE_AFTER_UPLOAD",
    "PROC_SETTLE_FIRST",
    "PROC_VOID",
    "REQUEST_MTIS",
    "REQUIRED_FIELDS",
    "RESPONSE_CODES",
    "SIGN_OFF",
    "SIGN_ON",
    "SPEC",
    "BatchTotals",
    "CardArgs",
    "advice_request",
    "batch_upload_request",
    "decode",
    "echo_request",
    "encode",
    "field_int",
    "is_approved",
    "mask_pan",
    "missing_fields",
    "redacted",
    "refund_request",
    "response_for",
    "response_mti",
    "response_text",
    "reversal_request",
    "sale_request",
    "salvage",
    "settlement_request",
    "sign_off_request",
    "sign_on_request",
    "terminal_id_field",
    "void_request",
]

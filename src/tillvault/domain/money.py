"""Money as integer minor units and the ISO 4217 currency table.

Every amount in TillVault is an ``int`` of minor units (fen, cents, yen) with an ISO 4217
currency beside it. Text enters through :func:`parse_amount` and leaves through
:func:`format_amount`; both are exact (no ``float`` anywhere) and refuse anything ambiguous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tillvault.errors import InvalidInput

__all__ = [
    "MAX_MINOR",
    "Currency",
    "currencies",
    "currency_info",
    "format_amount",
    "parse_amount",
]

#: Largest amount accepted, in minor units: fits a signed 64-bit integer column.
MAX_MINOR = 10**18 - 1
#: Digits a sale's or refund's amount may have before its decimal point (a trillion in any
#: currency is no one's purchase; a card number has 12 to 19).
MAX_WHOLE_DIGITS = 12


@dataclass(frozen=True)
class Currency:
    """One ISO 4217 currency: alphabetic code, 3-digit numeric code, minor-unit exponent."""

    alpha: str
    numeric: str
    exponent: int
    name: str = ""


# Active ISO 4217 codes (list one, SIX Group), without precious metals and the test/"no
# currency" codes (XAU, XTS, XXX=999 ...), which never price a sale.
_TABLE = """
AED 784 2 UAE Dirham
AFN 971 2 Afghani
ALL 008 2 Lek
AMD 051 2 Armenian Dram
ANG 532 2 Netherlands Antillean Guilder
AOA 973 2 Kwanza
ARS 032 2 Argentine Peso
AUD 036 2 Australian Dollar
AWG 533 2 Aruban Florin
AZN 944 2 Azerbaijan Manat
BAM 977 2 Convertible Mark
BBD 052 2 Barbados Dollar
BDT 050 2 Taka
BGN 975 2 Bulgarian Lev
BHD 048 3 Bahraini Dinar
BIF 108 0 Burundi Franc
BMD 060 2 Bermudian Dollar
BND 096 2 Brunei Dollar
BOB 068 2 Boliviano
BOV 984 2 Mvdol
BRL 986 2 Brazilian Real
BSD 044 2 Bahamian Dollar
BTN 064 2 Ngultrum
BWP 072 2 Pula
BYN 933 2 Belarusian Ruble
BZD 084 2 Belize Dollar
CAD 124 2 Canadian Dollar
CDF 976 2 Congolese Franc
CHE 947 2 WIR Euro
CHF 756 2 Swiss Franc
CHW 948 2 WIR Franc
CLF 990 4 Unidad de Fomento
CLP 152 0 Chilean Peso
CNY 156 2 Yuan Renminbi
COP 170 2 Colombian Peso
COU 970 2 Unidad de Valor Real
CRC 188 2 Costa Rican Colon
CUP 192 2 Cuban Peso
CVE 132 2 Cabo Verde Escudo
CZK 203 2 Czech Koruna
DJF 262 0 Djibouti Franc
DKK 208 2 Danish Krone
DOP 214 2 Dominican Peso
DZD 012 2 Algerian Dinar
EGP 818 2 Egyptian Pound
ERN 232 2 Nakfa
ETB 230 2 Ethiopian Birr
EUR 978 2 Euro
FJD 242 2 Fiji Dollar
FKP 238 2 Falkland Islands Pound
GBP 826 2 Pound Sterling
GEL 981 2 Lari
GHS 936 2 Ghana Cedi
GIP 292 2 Gibraltar Pound
GMD 270 2 Dalasi
GNF 324 0 Guinean Franc
GTQ 320 2 Quetzal
GYD 328 2 Guyana Dollar
HKD 344 2 Hong Kong Dollar
HNL 340 2 Lempira
HTG 332 2 Gourde
HUF 348 2 Forint
IDR 360 2 Rupiah
ILS 376 2 New Israeli Sheqel
INR 356 2 Indian Rupee
IQD 368 3 Iraqi Dinar
IRR 364 2 Iranian Rial
ISK 352 0 Iceland Krona
JMD 388 2 Jamaican Dollar
JOD 400 3 Jordanian Dinar
JPY 392 0 Yen
KES 404 2 Kenyan Shilling
KGS 417 2 Som
KHR 116 2 Riel
KMF 174 0 Comorian Franc
KPW 408 2 North Korean Won
KRW 410 0 Won
KWD 414 3 Kuwaiti Dinar
KYD 136 2 Cayman Islands Dollar
KZT 398 2 Tenge
LAK 418 2 Lao Kip
LBP 422 2 Lebanese Pound
LKR 144 2 Sri Lanka Rupee
LRD 430 2 Liberian Dollar
LSL 426 2 Loti
LYD 434 3 Libyan Dinar
MAD 504 2 Moroccan Dirham
MDL 498 2 Moldovan Leu
MGA 969 2 Malagasy Ariary
MKD 807 2 Denar
MMK 104 2 Kyat
MNT 496 2 Tugrik
MOP 446 2 Pataca
MRU 929 2 Ouguiya
MUR 480 2 Mauritius Rupee
MVR 462 2 Rufiyaa
MWK 454 2 Malawi Kwacha
MXN 484 2 Mexican Peso
MXV 979 2 Mexican Unidad de Inversion
MYR 458 2 Malaysian Ringgit
MZN 943 2 Mozambique Metical
NAD 516 2 Namibia Dollar
NGN 566 2 Naira
NIO 558 2 Cordoba Oro
NOK 578 2 Norwegian Krone
NPR 524 2 Nepalese Rupee
NZD 554 2 New Zealand Dollar
OMR 512 3 Rial Omani
PAB 590 2 Balboa
PEN 604 2 Sol
PGK 598 2 Kina
PHP 608 2 Philippine Peso
PKR 586 2 Pakistan Rupee
PLN 985 2 Zloty
PYG 600 0 Guarani
QAR 634 2 Qatari Rial
RON 946 2 Romanian Leu
RSD 941 2 Serbian Dinar
RUB 643 2 Russian Ruble
RWF 646 0 Rwanda Franc
SAR 682 2 Saudi Riyal
SBD 090 2 Solomon Islands Dollar
SCR 690 2 Seychelles Rupee
SDG 938 2 Sudanese Pound
SEK 752 2 Swedish Krona
SGD 702 2 Singapore Dollar
SHP 654 2 Saint Helena Pound
SLE 925 2 Leone
SOS 706 2 Somali Shilling
SRD 968 2 Surinam Dollar
SSP 728 2 South Sudanese Pound
STN 930 2 Dobra
SVC 222 2 El Salvador Colon
SYP 760 2 Syrian Pound
SZL 748 2 Lilangeni
THB 764 2 Baht
TJS 972 2 Somoni
TMT 934 2 Turkmenistan New Manat
TND 788 3 Tunisian Dinar
TOP 776 2 Pa'anga
TRY 949 2 Turkish Lira
TTD 780 2 Trinidad and Tobago Dollar
TWD 901 2 New Taiwan Dollar
TZS 834 2 Tanzanian Shilling
UAH 980 2 Hryvnia
UGX 800 0 Uganda Shilling
USD 840 2 US Dollar
USN 997 2 US Dollar (Next day)
UYI 940 0 Uruguay Peso en Unidades Indexadas
UYU 858 2 Peso Uruguayo
UYW 927 4 Unidad Previsional
UZS 860 2 Uzbekistan Sum
VED 926 2 Bolivar Soberano
VES 928 2 Bolivar Soberano
VND 704 0 Dong
VUV 548 0 Vatu
WST 882 2 Tala
XAF 950 0 CFA Franc BEAC
XCD 951 2 East Caribbean Dollar
XOF 952 0 CFA Franc BCEAO
XPF 953 0 CFP Franc
YER 886 2 Yemeni Rial
ZAR 710 2 Rand
ZMW 967 2 Zambian Kwacha
ZWG 924 2 Zimbabwe Gold
"""


def _load() -> tuple[dict[str, Currency], dict[str, Currency]]:
    by_alpha: dict[str, Currency] = {}
    by_numeric: dict[str, Currency] = {}
    for line in _TABLE.strip().splitlines():
        alpha, numeric, exponent, name = line.split(" ", 3)
        cur = Currency(alpha, numeric, int(exponent), name)
        by_alpha[alpha] = cur
        by_numeric[numeric] = cur
    return by_alpha, by_numeric


_BY_ALPHA, _BY_NUMERIC = _load()


def currencies() -> list[Currency]:
    """Every currency in the table, sorted by alphabetic code."""
    return [_BY_ALPHA[k] for k in sorted(_BY_ALPHA)]


def currency_info(code: str | int | Currency) -> Currency:
    """Look up a currency by alphabetic code (``"CNY"``, any case) or numeric code (``"156"``, ``156``).

    :raises InvalidInput: the code is not an active ISO 4217 currency (the message names it).
    """
    if isinstance(code, Currency):
        return code
    if isinstance(code, bool) or not isinstance(code, str | int):
        raise InvalidInput(f"currency must be an ISO 4217 code such as 'CNY' or '156', not {code!r}")
    text = f"{code:03d}" if isinstance(code, int) and code >= 0 else str(code).strip()
    if re.fullmatch(r"[A-Za-z]{3}", text):
        found = _BY_ALPHA.get(text.upper())
    elif re.fullmatch(r"[0-9]{3}", text):
        found = _BY_NUMERIC.get(text)
    else:
        raise InvalidInput(f"currency {str(code)!r} is not an ISO 4217 code (3 letters or 3 digits)")
    if found is None:
        raise InvalidInput(f"currency {text!r} is not an ISO 4217 code")
    return found


_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]+))?")


def parse_transaction_amount(text: str, currency: str | int | Currency) -> int:
    """:func:`parse_amount` for the amount of one sale or refund as typed at the terminal.

    More than :data:`MAX_WHOLE_DIGITS` digits before the decimal point is refused without
    echoing them: that is a card number typed (or swiped) into the amount, not a price.

    :raises InvalidInput: as :func:`parse_amount`, too many digits, or zero.
    """
    if isinstance(text, str):
        whole = re.sub(r"[^0-9].*", "", text.strip().lstrip(";%+")).lstrip("0")
        if len(whole) > MAX_WHOLE_DIGITS:
            raise InvalidInput(
                f"amount starts with {len(whole)} digits, more than the {MAX_WHOLE_DIGITS} an amount may have "
                "before its decimal point: is it a card number typed into the amount?"
            )
    minor = parse_amount(text, currency)
    if minor == 0:
        raise InvalidInput(f"amount {text!r} is zero: a sale or refund moves some money")
    return minor


def parse_amount(text: str, currency: str | int | Currency) -> int:
    """Parse a decimal amount such as ``"12.34"`` into minor units (``1234`` for CNY).

    The grammar is deliberately narrow: ASCII digits, optionally one ``.`` followed by at most
    as many digits as the currency's exponent (2 for CNY, 0 for JPY, 3 for KWD). Signs,
    exponents, ``NaN``/``inf``, thousands separators, commas as decimal marks, spaces inside
    the number and empty text are refused, each with a message that says what to write.

    :returns: the amount in minor units (``int``, never negative).
    :raises InvalidInput: the text is not such an amount, or the currency is unknown.
    """
    cur = currency_info(currency)
    if not isinstance(text, str):
        raise InvalidInput(f"amount must be text such as '12.34', not {type(text).__name__}")
    raw = text.strip()
    shown = raw if len(raw) <= 40 else raw[:37] + "..."
    if not raw:
        raise InvalidInput("amount is empty; write it like 12.34")
    if raw[0] in "+-":
        if raw[0] == "-":
            raise InvalidInput(f"amount {shown!r} is negative; amounts are never negative")
        raise InvalidInput(f"amount {shown!r} has a sign; write it without '+'")
    if raw.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        raise InvalidInput(f"amount {shown!r} is not a number")
    if "," in raw or "_" in raw or "'" in raw or " " in raw:
        raise InvalidInput(
            f"amount {shown!r} contains a separator (',', '_', quote or space); thousands separators "
            "are ambiguous: write the plain number with '.' for decimals, like 1234.56"
        )
    if re.search(r"[eE]", raw) and re.fullmatch(r"[0-9.]+[eE][+-]?[0-9]+", raw):
        raise InvalidInput(f"amount {shown!r} uses an exponent; write the plain number, like 1234.56")
    match = _AMOUNT.fullmatch(raw)
    if match is None:
        if re.fullmatch(r"\.[0-9]+", raw):
            raise InvalidInput(f"amount {shown!r} needs a digit before the '.', like 0{raw}")
        if re.fullmatch(r"[0-9]+\.", raw):
            raise InvalidInput(f"amount {shown!r} ends with '.'; write {raw[:-1]} or add the decimals")
        if raw.count(".") > 1:
            raise InvalidInput(f"amount {shown!r} has more than one '.'")
        raise InvalidInput(f"amount {shown!r} is not a plain decimal number like 12.34 (ASCII digits only)")
    whole, frac = match.group(1), match.group(2) or ""
    if len(frac) > cur.exponent:
        if cur.exponent == 0:
            raise InvalidInput(f"amount {shown!r} has decimals, but {cur.alpha} has no minor unit")
        raise InvalidInput(f"amount {shown!r} has {len(frac)} decimals; {cur.alpha} allows at most {cur.exponent}")
    minor = int(whole) * 10**cur.exponent + int(frac.ljust(cur.exponent, "0") or "0")
    if minor > MAX_MINOR:
        raise InvalidInput(f"amount {shown!r} is too large")
    return minor


def format_amount(minor: int, currency: str | int | Currency) -> str:
    """Format minor units as a plain decimal string: ``1234`` CNY -> ``"12.34"``, ``1234`` JPY -> ``"1234"``.

    No currency symbol, no thousands separators; negative amounts (refunds) get a leading ``-``.
    The output parses back with :func:`parse_amount` (for non-negative amounts).

    :raises InvalidInput: ``minor`` is not an ``int``, or the currency is unknown.
    """
    cur = currency_info(currency)
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise InvalidInput(f"amount must be an int of minor units, not {type(minor).__name__}")
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor))
    if cur.exponent == 0:
        return sign + digits
    digits = digits.rjust(cur.exponent + 1, "0")
    return f"{sign}{digits[: -cur.exponent]}.{digits[-cur.exponent :]}"

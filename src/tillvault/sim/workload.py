"""The reference shop of ``WORKLOAD.md``: a deterministic generator of sales and of sealed records.

Two views of the same shop:

* :func:`generate_day` gives what customers *do* on one day (:class:`SaleIntent`: time, amount,
  card, entry mode, member, sale/refund/void, retries, hints about declines and host gaps). The
  simulator and the demo drive a terminal with these.
* :func:`reference_records` gives what the vault *keeps* afterwards: complete rows shaped exactly
  like the hot tier's ``transactions`` table (without ``checksum``), settled, with fees. Every
  footprint and speed figure (bytes per transaction, seal speed) is measured on these.

Everything is drawn from ``random.Random`` seeded from the profile's seed and the day, so a
day's output depends only on ``(profile, day_index, start_date)``, never on call order.

Choices the workload leaves open, made here (and quoted by the benchmarks):

* Repeat customers come from a fixed pool of cards per run (``repeat_pool`` cards with a
  Zipf–Mandelbrot popularity ``1/(rank + zipf_offset)^zipf_s``), so the most loyal customer
  pays a few times a day and most regulars once a week or so.
* Members (25% of sales) are mostly regulars: a pool card belongs to a member with
  probability ``min(1, 1.8 × member_share)``; new cards name a member often enough to make up
  the rest.
* UnionPay debit cards carry 19 digits 60% of the time (as Chinese debit cards often do),
  the others 16; Amex has its 15. Every generated PAN passes Luhn (UnionPay is exempt from
  Luhn, but real UnionPay numbers mostly pass it too).
* A duplicate submission is the same request sent again a few seconds later; the vault
  keeps one record for it, so :func:`reference_records` has no row for the retry.
* 20% of transactions come from the shop's electronic cash register (ECR) with its order
  number as idempotency key (``ecr-YYYYMMDD-NNNNN``); the rest have none.
* A day's batch settles at about 23:10: settlement writes the fee, so ``updated_ms`` of an
  approved row is the settlement time. The host's RRN is a 12-digit counter it shares with
  other terminals (about 800 other messages between two of ours); auth codes are 6 digits.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import hmac
import math
import random
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from tillvault.domain.cards import mask_pan

#: Seed of the reference workload (benchmarks and the demo use it).
REFERENCE_SEED = 20250602
#: First business day of the reference workload (a Monday).
REFERENCE_START = date(2025, 6, 2)
#: The shop's local time (China Standard Time, UTC+8).
SHOP_TZ = timezone(timedelta(hours=8), "CST")
#: HMAC key of the benchmark's card tokens (fixed so figures are reproducible; not a secret).
BENCH_TOKEN_KEY = b"tillvault-reference-workload-token-key"

# Issuer identification numbers (first six digits) per brand and card type.
_BINS: dict[tuple[str, str], tuple[str, ...]] = {
    ("unionpay", "debit"): ("621700", "622202", "622848", "621226", "623668", "621483", "621661", "622700"),
    ("unionpay", "credit"): ("625807", "622588", "628288", "625965", "622155"),
    ("visa", "debit"): ("476173", "455952"),
    ("visa", "credit"): ("453201", "404117", "427020", "438088"),
    ("mastercard", "debit"): ("512345",),
    ("mastercard", "credit"): ("552199", "540123", "222300"),
    ("jcb", "credit"): ("356800", "353011"),
    ("amex", "credit"): ("378282", "371449"),
    ("discover", "credit"): ("601100",),
}

_DECLINE_CODES: tuple[tuple[str, float, str], ...] = (
    ("51", 0.70, "insufficient funds"),
    ("05", 0.12, "do not honour"),
    ("55", 0.08, "incorrect PIN"),
    ("61", 0.06, "exceeds amount limit"),
    ("54", 0.04, "expired card"),
)
_DECLINE_REASONS = {code: reason for code, _, reason in _DECLINE_CODES}


@dataclass(frozen=True)
class ShopProfile:
    """The shop's parameters; the defaults are the reference shop of ``WORKLOAD.md``.

    Shares are fractions (0.03 = 3%); amounts are minor units (fen); hours are local hours.
    """

    seed: int = REFERENCE_SEED
    per_day: int = 2000
    open_hour: float = 7.0
    close_hour: float = 23.0
    #: Arrival peaks: (centre hour, spread in hours, share of the day's arrivals); the rest is uniform.
    peaks: tuple[tuple[float, float, float], ...] = ((8.0, 0.6, 0.08), (12.0, 0.9, 0.35), (18.5, 1.2, 0.32))
    weekend_factor: float = 1.3
    #: Day indexes (0 = ``start_date``) that are promotion days.
    surge_days: tuple[int, ...] = ()
    surge_factor: float = 10.0
    #: Relative day-to-day variation of volume (standard deviation).
    daily_noise: float = 0.05
    brand_mix: tuple[tuple[str, float], ...] = (
        ("unionpay", 0.80),
        ("visa", 0.12),
        ("mastercard", 0.06),
        ("jcb", 0.01),
        ("amex", 0.007),
        ("discover", 0.003),
    )
    #: Share of debit cards among UnionPay cards, and among Visa/Mastercard cards.
    unionpay_debit: float = 0.70
    international_debit: float = 0.25
    repeat_share: float = 0.45
    repeat_pool: int = 8000
    zipf_s: float = 1.1
    zipf_offset: float = 100.0
    member_share: float = 0.25
    amount_median_minor: int = 3500
    amount_sigma: float = 0.9
    amount_cap_minor: int = 2_000_000
    whole_yuan_share: float = 0.10
    decline_rate: float = 0.03
    refund_rate: float = 0.01
    void_rate: float = 0.005
    duplicate_rate: float = 0.005
    entry_mix: tuple[tuple[str, float], ...] = (("contactless", 0.50), ("chip", 0.30), ("qr", 0.15), ("swipe", 0.05))
    #: Share of opening hours in which the host is unreachable (short gaps).
    host_gap_share: float = 0.02
    #: A longer outage: (first day index, number of days), or ``None``.
    outage: tuple[int, int] | None = None
    #: Offline approval limit while the host is unreachable.
    floor_limit_minor: int = 30_000
    ecr_share: float = 0.20
    currency: str = "CNY"
    terminal_id: str = "TV000001"
    merchant_id: str = "898310054110001"


@dataclass(slots=True)
class SaleIntent:
    """One thing a customer asks the terminal to do.

    ``amount_minor`` is in fen; ``time`` is local (UTC+8). ``duplicate_of`` and
    ``original_of`` are indexes into the same day's list: a retry of that request, and the
    sale a refund or void refers to. ``will_decline``/``decline_code`` say what the issuer
    will answer; ``host_down`` that the host is unreachable at that moment.
    """

    index: int
    time: datetime
    amount_minor: int
    currency: str
    pan: str
    expiry: str
    brand: str
    card_type: str
    entry_mode: str
    member_phone: str | None
    kind: str = "sale"
    duplicate_of: int | None = None
    original_of: int | None = None
    will_decline: bool = False
    decline_code: str | None = None
    host_down: bool = False
    ecr_order: int | None = None


@dataclass(frozen=True, slots=True)
class _Card:
    pan: str
    expiry: str
    brand: str
    card_type: str
    member: int | None  # index into the member list, or None


@dataclass
class _Pool:
    cards: list[_Card]
    cum_weights: list[float]
    phones: list[str]
    member_prob_new: float
    tokens: dict[str, str] = field(default_factory=dict)


def _pick(rng: random.Random, mix: tuple[tuple[str, float], ...]) -> str:
    r = rng.random() * sum(w for _, w in mix)
    for name, weight in mix:
        r -= weight
        if r < 0:
            return name
    return mix[-1][0]


def _new_card(
    rng: random.Random, profile: ShopProfile, today: date, member: int | None, months: tuple[int, int] = (6, 60)
) -> _Card:
    brand = _pick(rng, profile.brand_mix)
    if brand == "unionpay":
        card_type = "debit" if rng.random() < profile.unionpay_debit else "credit"
    elif brand in ("visa", "mastercard"):
        card_type = "debit" if rng.random() < profile.international_debit else "credit"
    else:
        card_type = "credit"
    bins = _BINS[(brand, card_type)]
    iin = bins[rng.randrange(len(bins))]
    if brand == "amex":
        length = 15
    elif brand == "unionpay" and card_type == "debit" and rng.random() < 0.6:
        length = 19
    else:
        length = 16
    k = length - len(iin) - 1
    body = f"{iin}{rng.randrange(10**k):0{k}d}"
    pan = body + _luhn_digit(body)
    month = today.year * 12 + today.month - 1 + rng.randint(*months)
    expiry = f"{(month // 12) % 100:02d}{month % 12 + 1:02d}"
    return _Card(pan, expiry, brand, card_type, member)


def _luhn_digit(body: str) -> str:
    """The Luhn check digit completing ``body`` (ASCII digits); same as ``cards.luhn_check_digit``, faster."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = ord(ch) - 48
        if i % 2 == 0:  # doubled: these digits sit at odd positions once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"


@functools.lru_cache(maxsize=8)
def _pool(profile: ShopProfile, start_date: date) -> _Pool:
    """The run's regular customers: cards, their popularity and the members' phones."""
    rng = random.Random(f"{profile.seed}:pool")
    member_prob = min(1.0, 1.8 * profile.member_share)
    cards: list[_Card] = []
    phones: list[str] = []
    for _ in range(profile.repeat_pool):
        member = None
        if rng.random() < member_prob:
            member = len(phones)
            phones.append(_phone(rng))
        # Regulars' cards stay valid for long runs: expiry three to six years after the start.
        cards.append(_new_card(rng, profile, start_date, member, months=(36, 72)))
    weights = [1.0 / (rank + profile.zipf_offset) ** profile.zipf_s for rank in range(1, len(cards) + 1)]
    cum: list[float] = []
    acc = 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    rest = 1.0 - profile.repeat_share
    member_prob_new = max(0.0, (profile.member_share - profile.repeat_share * member_prob) / rest) if rest else 0.0
    return _Pool(cards, cum, phones, min(1.0, member_prob_new))


def _arrival_ms(rng: random.Random, profile: ShopProfile, count: int) -> list[int]:
    """Sorted arrival times, in ms after local midnight, drawn from the daily profile."""
    open_h, close_h = profile.open_hour, profile.close_hour
    out: list[int] = []
    for _ in range(count):
        r = rng.random()
        hour = -1.0
        for centre, spread, share in profile.peaks:
            if r < share:
                while not open_h <= hour < close_h:
                    hour = rng.gauss(centre, spread)
                break
            r -= share
        else:
            hour = rng.uniform(open_h, close_h)
        out.append(min(int(hour * 3_600_000), int(close_h * 3_600_000) - 1))
    out.sort()
    return out


def _amount(rng: random.Random, profile: ShopProfile) -> int:
    value = math.exp(math.log(profile.amount_median_minor) + profile.amount_sigma * rng.gauss(0.0, 1.0))
    value = min(value, profile.amount_cap_minor)
    if rng.random() < profile.whole_yuan_share:
        return max(100, round(value / 100.0) * 100)
    return max(1, round(value))


def _gaps(rng: random.Random, profile: ShopProfile) -> list[tuple[int, int]]:
    """Short host outages of the day as (start ms, end ms) after midnight."""
    total_ms = profile.host_gap_share * (profile.close_hour - profile.open_hour) * 3_600_000
    if total_ms <= 0:
        return []
    n = rng.randint(1, 4)
    out = []
    for _ in range(n):
        length = int(total_ms / n * rng.uniform(0.5, 1.5))
        start = int(rng.uniform(profile.open_hour * 3_600_000, profile.close_hour * 3_600_000 - length))
        out.append((start, start + length))
    return out


def day_volume(profile: ShopProfile, day_index: int, start_date: date) -> float:
    """Expected number of requests on a day (weekend and surge factors, before noise)."""
    day = start_date + timedelta(days=day_index)
    volume = float(profile.per_day)
    if day.weekday() >= 5:
        volume *= profile.weekend_factor
    if day_index in profile.surge_days:
        volume *= profile.surge_factor
    return volume


def generate_day(profile: ShopProfile, day_index: int, start_date: date = REFERENCE_START) -> list[SaleIntent]:
    """What the shop's customers ask for on day ``day_index`` (0 = ``start_date``), in time order.

    Deterministic: the same profile, day and start date give the same list.
    """
    day = start_date + timedelta(days=day_index)
    rng = random.Random(f"{profile.seed}:{day.isoformat()}:{day_index}")
    pool = _pool(profile, start_date)
    count = max(0, round(day_volume(profile, day_index, start_date) * (1.0 + rng.gauss(0.0, profile.daily_noise))))
    midnight = datetime.combine(day, time(0), tzinfo=SHOP_TZ)
    arrivals = _arrival_ms(rng, profile, count)
    if profile.outage is not None and profile.outage[0] <= day_index < profile.outage[0] + profile.outage[1]:
        gaps = [(0, 86_400_000)]
    else:
        gaps = _gaps(rng, profile)
    intents: list[SaleIntent] = []
    sales: list[int] = []  # indexes of plain sales, candidates for refunds and voids
    ecr_order = 0
    total_weight = pool.cum_weights[-1] if pool.cum_weights else 0.0
    for ms in arrivals:
        index = len(intents)
        when = midnight + timedelta(milliseconds=ms)
        host_down = any(a <= ms < b for a, b in gaps)
        if intents and rng.random() < profile.duplicate_rate:
            orig = intents[rng.randrange(max(0, index - 5), index)]
            if orig.duplicate_of is not None:
                orig = intents[orig.duplicate_of]  # a retry repeats the first request
            dup = SaleIntent(
                index=index,
                time=max(when, orig.time + timedelta(milliseconds=rng.randint(2_000, 20_000))),
                amount_minor=orig.amount_minor,
                currency=orig.currency,
                pan=orig.pan,
                expiry=orig.expiry,
                brand=orig.brand,
                card_type=orig.card_type,
                entry_mode=orig.entry_mode,
                member_phone=orig.member_phone,
                kind=orig.kind,
                duplicate_of=orig.index,
                original_of=orig.original_of,
                will_decline=orig.will_decline,
                decline_code=orig.decline_code,
                host_down=host_down,
                ecr_order=orig.ecr_order,
            )
            intents.append(dup)
            continue
        r = rng.random()
        if r < profile.refund_rate + profile.void_rate and sales:
            kind = "refund" if r < profile.refund_rate else "void"
            # A void cancels a recent sale (a mistake noticed at once); a refund any sale of the day.
            window = sales[-30:] if kind == "void" else sales
            orig = intents[window[rng.randrange(len(window))]]
            amount = orig.amount_minor
            if kind == "refund" and rng.random() < 0.3:
                amount = max(1, int(amount * rng.uniform(0.1, 0.9)))
            intent = SaleIntent(
                index=index,
                time=when,
                amount_minor=amount,
                currency=profile.currency,
                pan=orig.pan,
                expiry=orig.expiry,
                brand=orig.brand,
                card_type=orig.card_type,
                entry_mode=orig.entry_mode,
                member_phone=orig.member_phone,
                kind=kind,
                original_of=orig.index,
                host_down=host_down,
            )
        else:
            if total_weight and rng.random() < profile.repeat_share:
                card = pool.cards[bisect.bisect_left(pool.cum_weights, rng.random() * total_weight)]
                phone = pool.phones[card.member] if card.member is not None else None
            else:
                card = _new_card(rng, profile, day, None)
                phone = None
                if pool.phones and rng.random() < pool.member_prob_new:
                    phone = pool.phones[rng.randrange(len(pool.phones))]
            entry = _pick(rng, profile.entry_mix)
            if entry == "qr" and card.brand != "unionpay":
                entry = "contactless"
            decline = rng.random() < profile.decline_rate
            code = None
            if decline:
                code = _pick(rng, tuple((c, w) for c, w, _ in _DECLINE_CODES))
            intent = SaleIntent(
                index=index,
                time=when,
                amount_minor=_amount(rng, profile),
                currency=profile.currency,
                pan=card.pan,
                expiry=card.expiry,
                brand=card.brand,
                card_type=card.card_type,
                entry_mode=entry,
                member_phone=phone,
                will_decline=decline,
                decline_code=code,
                host_down=host_down,
            )
            if not decline:
                sales.append(index)
        if rng.random() < profile.ecr_share:
            ecr_order += 1
            intent.ecr_order = ecr_order
        intents.append(intent)
    return _in_time_order(intents)


def _in_time_order(intents: list[SaleIntent]) -> list[SaleIntent]:
    """Sort by time (a retry may land after the next arrival) and renumber the cross-references."""
    ordered = sorted(intents, key=lambda i: i.time)
    new_index = {intent.index: position for position, intent in enumerate(ordered)}
    for position, intent in enumerate(ordered):
        intent.index = position
        if intent.duplicate_of is not None:
            intent.duplicate_of = new_index[intent.duplicate_of]
        if intent.original_of is not None:
            intent.original_of = new_index[intent.original_of]
    return ordered


def bench_token(pan: str) -> str:
    """The benchmark's card token of ``pan``: 32 hex chars of HMAC-SHA256 under :data:`BENCH_TOKEN_KEY`.

    Same form as :meth:`tillvault.store.keys.KeyRing.token` (``pan:`` domain, first 16 bytes).
    """
    return hmac.new(BENCH_TOKEN_KEY, f"pan:{pan}".encode(), hashlib.sha256).hexdigest()[:32]


def _fee(amount: int, brand: str, card_type: str) -> int:
    """Merchant fee in fen: UnionPay debit 0.5% capped at ¥20, UnionPay credit 0.6%, others 2%."""
    if brand == "unionpay":
        if card_type == "debit":
            return min((amount * 50 + 5000) // 10000, 2000)
        return (amount * 60 + 5000) // 10000
    return (amount * 200 + 5000) // 10000


def reference_records(
    n: int,
    seed: int = REFERENCE_SEED,
    *,
    profile: ShopProfile | None = None,
    start_date: date = REFERENCE_START,
) -> list[dict[str, Any]]:
    """``n`` complete, settled transaction records of the reference shop, oldest first.

    Each record has exactly the columns of the hot tier's ``transactions`` table except
    ``checksum``: integers for invoice, batch, STAN, amount (fen), fee (fen), times (ms since
    the epoch); text for the rest; ``None`` where a value does not apply. One batch per
    business day, settled at about 23:10 local time. Card data is kept as the card token
    (32 hex chars, :func:`bench_token`) and the masked PAN, never the PAN.

    ``profile`` overrides the shop (its ``seed`` is replaced by ``seed``).
    """
    shop = ShopProfile(seed=seed) if profile is None else _with_seed(profile, seed)
    pool = _pool(shop, start_date)
    member_refs = {phone: f"C{i + 1:07d}" for i, phone in enumerate(pool.phones)}
    tokens = pool.tokens
    rrn_rng = random.Random(f"{seed}:host")
    rrn = 400_000_000_000 + rrn_rng.randrange(10_000_000)
    invoice = 0
    out: list[dict[str, Any]] = []
    day_index = 0
    while len(out) < n:
        intents = generate_day(shop, day_index, start_date)
        day = start_date + timedelta(days=day_index)
        rng = random.Random(f"{seed}:{day.isoformat()}:records")
        business_date = day.isoformat()
        batch = day_index + 1
        settle_ms = int(datetime.combine(day, time(23, 10), tzinfo=SHOP_TZ).timestamp() * 1000)
        settle_ms += rng.randrange(120_000)
        by_intent: dict[int, dict[str, Any]] = {}
        stan = 0
        day_records: list[dict[str, Any]] = []
        for intent in intents:
            if intent.duplicate_of is not None:
                continue  # the retry returns the first request's record: nothing new is kept
            invoice += 1
            stan += 1
            created = round(intent.time.timestamp() * 1000)
            token = tokens.get(intent.pan)
            if token is None:
                token = tokens[intent.pan] = bench_token(intent.pan)
            hour = intent.time.hour
            rec: dict[str, Any] = {
                "invoice": invoice,
                "terminal_id": shop.terminal_id,
                "batch": batch,
                "stan": stan,
                "business_date": business_date,
                "kind": intent.kind,
                "status": "approved",
                "amount": intent.amount_minor,
                "currency": intent.currency,
                "card_token": token,
                "masked_pan": mask_pan(intent.pan),
                "brand": intent.brand,
                "card_type": intent.card_type,
                "entry_mode": intent.entry_mode,
                "merchant_id": shop.merchant_id,
                "operator_id": ("01" if rng.random() < 0.5 else "02")
                if hour < 15
                else ("03" if rng.random() < 0.5 else "04"),
                "customer_ref": member_refs.get(intent.member_phone) if intent.member_phone else None,
                "original_invoice": None,
                "rrn": None,
                "auth_code": None,
                "response_code": None,
                "reason": None,
                "fee": None,
                "created_ms": created,
                "updated_ms": created + rng.randint(300, 2500),
                "idem_key": f"ecr-{day:%Y%m%d}-{intent.ecr_order:05d}" if intent.ecr_order else None,
                "extra": None,
            }
            original = by_intent.get(intent.original_of) if intent.original_of is not None else None
            if intent.kind in ("refund", "void"):
                if original is None or original["status"] != "approved" or original["kind"] != "sale":
                    rec["kind"] = "sale"  # nothing to refer to: the customer buys instead
                else:
                    rec["original_invoice"] = original["invoice"]
                    rec["operator_id"] = "00"  # refunds and voids need the supervisor
            if intent.host_down:
                if rec["kind"] == "sale" and intent.amount_minor <= shop.floor_limit_minor and not intent.will_decline:
                    rec.update(kind="offline_sale", status="offline_approved", response_code="Y1")
                else:
                    rec.update(status="not_completed", reason="host unreachable")
                    by_intent[intent.index] = rec
                    day_records.append(rec)
                    continue
            elif intent.will_decline and rec["kind"] == "sale":
                code = intent.decline_code or "51"
                rrn += 1 + int(rrn_rng.expovariate(1 / 800))
                rec.update(status="declined", response_code=code, reason=_DECLINE_REASONS.get(code), rrn=f"{rrn:012d}")
                by_intent[intent.index] = rec
                day_records.append(rec)
                continue
            else:
                rrn += 1 + int(rrn_rng.expovariate(1 / 800))
                rec.update(rrn=f"{rrn:012d}", auth_code=f"{rrn_rng.randrange(1_000_000):06d}", response_code="00")
            if rec["kind"] == "void" and original is not None:
                original.update(status="voided", fee=None, updated_ms=rec["created_ms"])
            by_intent[intent.index] = rec
            day_records.append(rec)
        for rec in day_records:
            if rec["status"] in ("approved", "offline_approved") and rec["kind"] != "void":
                if rec["kind"] == "offline_sale":
                    # The advice went up when the host came back; the host gave it an RRN then.
                    rrn += 1 + int(rrn_rng.expovariate(1 / 800))
                    rec["rrn"] = f"{rrn:012d}"
                rec["fee"] = 0 if rec["kind"] == "refund" else _fee(rec["amount"], rec["brand"], rec["card_type"])
                rec["updated_ms"] = max(settle_ms, rec["updated_ms"])
        out.extend(day_records)
        day_index += 1
    del out[n:]
    return out


def _with_seed(profile: ShopProfile, seed: int) -> ShopProfile:
    return replace(profile, seed=seed)

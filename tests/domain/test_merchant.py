"""Merchant: validation of ISO 8583 identifiers, licence numbers, and merchants from QR codes."""

from __future__ import annotations

import pytest

from tillvault.domain.emvqr import build_qr, parse_qr
from tillvault.domain.merchant import Merchant, derive_merchant_id, validate_licence_number
from tillvault.errors import InvalidInput, QRCodeInvalid

VALID_USCC = "91110000600037341L"


def make(**changes: object) -> Merchant:
    fields: dict[str, object] = {
        "merchant_id": "123456789012345",
        "terminal_id": "T0000001",
        "name": "张三便利店",
        "city": "Beijing",
        "country": "CN",
        "mcc": "5411",
        "currency": "156",
        "licence_number": VALID_USCC,
    }
    return Merchant(**{**fields, **changes})  # type: ignore[arg-type]


def test_valid_merchant_normalizes_currency_and_round_trips_through_dict() -> None:
    merchant = make()
    assert merchant.currency == "CNY"
    assert Merchant.from_dict(merchant.to_dict()) == merchant


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"merchant_id": "1234567890123456"}, "must be 1 to 15 letters, digits or spaces"),
        ({"merchant_id": "ABC-1"}, "must be 1 to 15 letters, digits or spaces"),
        ({"merchant_id": "   "}, "merchant id is blank"),
        ({"terminal_id": "T001"}, "must be exactly 8 letters or digits (ISO 8583 field 41)"),
        ({"terminal_id": "T000000-"}, "must be exactly 8 letters or digits"),
        ({"name": ""}, "merchant name is required"),
        ({"mcc": "541"}, "merchant category code '541' must be 4 digits"),
        ({"country": "cn"}, "must be 2 capital letters"),
        ({"currency": "RMB"}, "currency 'RMB' is not an ISO 4217 code"),
        ({"licence_number": "91110000600037341M"}, "has a wrong check digit"),
        ({"licence_number": "9111000060003734"}, "has 16 characters; a unified social credit code has 18"),
    ],
)
def test_constructor_refuses_bad_fields_precisely(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        make(**changes)
    assert message in str(info.value)


def test_empty_licence_means_not_given() -> None:
    assert make(licence_number="").licence_number == ""
    assert validate_licence_number(" 91110000600037341L ") == VALID_USCC


def test_from_qr_takes_name_place_and_merchant_id_from_the_code() -> None:
    payload = build_qr(
        name="北京朝阳区张三便利店",
        city="北京",
        country="CN",
        currency="CNY",
        mcc="5411",
        accounts=[{"gui": "A000000333", "fields": {"01": "898110000000001"}}],
    )
    merchant = Merchant.from_qr(parse_qr(payload), terminal_id="12345678", licence_number=VALID_USCC)
    assert merchant.merchant_id == "898110000000001"
    assert (merchant.name, merchant.city, merchant.country, merchant.mcc) == (
        "北京朝阳区张三便利店",
        "北京",
        "CN",
        "5411",
    )
    assert merchant.currency == "CNY" and merchant.accounts[0].gui == "A000000333"


def test_from_qr_skips_short_type_codes_and_uses_the_scheme_id() -> None:
    # PayNow: sub-field 01 is the proxy type ("2" = UEN), 02 the UEN itself.
    paynow = (
        "00020101021226560009SG.PAYNOW010120213201509555BNN1030100412230914205029520400005303702540450"
        ".05802SG5914DEV MERCHANT 56009SINGAPORE621601120870-0000VL663049149"
    )
    assert Merchant.from_qr(parse_qr(paynow), terminal_id="SG000001").merchant_id == "201509555BNN1"


def test_from_qr_derives_a_stable_id_when_the_code_has_none_that_fits() -> None:
    pix = (
        "00020126500014BR.GOV.BCB.PIX0128mariannavidal12345@gmail.com520400005303986540580.005802BR5923"
        "Marianna Vidal da Silva6009SAO PAULO62140510Uog7w1SbFq63044416"
    )
    first = Merchant.from_qr(parse_qr(pix), terminal_id="BR000001")
    again = Merchant.from_qr(parse_qr(pix), terminal_id="BR000002")
    assert first.merchant_id == again.merchant_id and len(first.merchant_id) == 15
    assert first.merchant_id == derive_merchant_id("26", "BR.GOV.BCB.PIX", "mariannavidal12345@gmail.com")


def test_from_qr_fills_missing_name_and_mcc() -> None:
    promptpay = "00020101021129370016A000000677010111011300668999999995802TH53037646304FE29"
    with pytest.raises(InvalidInput, match="no merchant name"):
        Merchant.from_qr(parse_qr(promptpay), terminal_id="TH000001")
    merchant = Merchant.from_qr(parse_qr(promptpay), terminal_id="TH000001", name="Somchai Shop")
    assert (merchant.merchant_id, merchant.mcc, merchant.currency) == ("0066899999999", "0000", "THB")


@pytest.mark.parametrize("bad", ["\x1b[2J", "\x00", "\u202e", "\u2028", "\ufeff"])
def test_a_name_given_at_init_is_held_to_the_same_text_rules_as_the_code(bad: str) -> None:
    promptpay = "00020101021129370016A000000677010111011300668999999995802TH53037646304FE29"
    with pytest.raises(InvalidInput, match=f"U\\+{ord(bad[0]):04X}"):
        Merchant.from_qr(parse_qr(promptpay), terminal_id="TH000001", name=f"Somchai{bad}Shop")
    long_name = "Somchai Noodles and Rice Shop of Bangkok"  # over EMVCo's 25: kept whole
    assert Merchant.from_qr(parse_qr(promptpay), terminal_id="TH000001", name=long_name).name == long_name


def test_from_qr_refuses_an_invalid_code() -> None:
    with pytest.raises(QRCodeInvalid) as info:
        Merchant.from_qr(parse_qr("000201"), terminal_id="12345678")
    assert info.value.errors


def test_explicit_merchant_id_wins() -> None:
    payload = build_qr(
        name="Shop",
        city="Shanghai",
        country="CN",
        currency="CNY",
        mcc="5812",
        accounts=[{"gui": "A000000333"}],
    )
    merchant = Merchant.from_qr(parse_qr(payload), terminal_id="12345678", merchant_id="MID 42")
    assert merchant.merchant_id == "MID 42"


def test_from_qr_never_takes_a_bank_code_or_free_text_for_the_merchant_id() -> None:
    # DuitNow: sub-field 01 is the acquirer (the same for every merchant of that bank), 02 the merchant.
    nasi = (
        "00020101021126560016A0000006150001010106890053021500000000012345603030055204581253034585802MY"
        "5918NASI LEMAK BANGSAR6012KUALA LUMPUR63040CD4"
    )
    kedai = (
        "00020101021126560016A0000006150001010106890053021500000000099999903030055204549953034585802MY"
        "5920KEDAI RUNCIT AH SENG6006PENANG63047AAA"
    )
    ids = [Merchant.from_qr(parse_qr(q), terminal_id="MY000001").merchant_id for q in (nasi, kedai)]
    assert ids == ["000000000123456", "000000000999999"]
    # QR Ph: 01 is the bank's BIC, 02 the payment type; the mobile number in 04 names the merchant.
    qrph = (
        "00020101021127580012com.p2pqrpay0111GXCHPHM2XXX020899964403041109170000001520458125303608"
        "5802PH5915SARI-SARI STORE6004Cebu6304CEE9"
    )
    assert Merchant.from_qr(parse_qr(qrph), terminal_id="PH000001").merchant_id == "09170000001"
    # Pix: 01 is the key (a phone number with "+" does not fit field 42), 02 a free-text description.
    pix = (
        "00020126540014BR.GOV.BCB.PIX0114+55119999988880214Pagamento cafe52040000530398654037.55802BR"
        "5913João da Silva6009São Paulo62120508TX123ABC6304F2BB"
    )
    merchant = Merchant.from_qr(parse_qr(pix), terminal_id="BR000001")
    assert merchant.merchant_id == derive_merchant_id("26", "BR.GOV.BCB.PIX", "+5511999998888")


def test_from_qr_derives_from_the_whole_account_when_nothing_in_it_names_the_merchant() -> None:
    def duitnow(acquirer: str, kind: str) -> str:
        return build_qr(
            name="KEDAI",
            city="PENANG",
            country="MY",
            currency="MYR",
            mcc="5499",
            accounts=[{"gui": "A000000615000101", "fields": {"01": acquirer, "03": kind}}],
        )

    one = Merchant.from_qr(parse_qr(duitnow("890053", "005")), terminal_id="MY000001").merchant_id
    two = Merchant.from_qr(parse_qr(duitnow("890053", "006")), terminal_id="MY000001").merchant_id
    assert one != two and one.startswith("M") and len(one) == 15


# Genuine codes of different merchants of one scheme, published in public sources; the sub-field
# that looks like a merchant id is shared by all of them, so the id comes from what tells them apart.
GCASH_P2P = (  # QR Ph P2P (GCash): 03 is the same in every code, 04 the wallet
    "00020101021127830012com.p2pqrpay0111GXCHPHM2XXX02089996440303152170200000006560417DWQM4TK3JDNWIWRDY"
    "5204601653036085802PH5908Setnayan6011Holy Spirit6104123463045E2D",
    "00020101021127830012com.p2pqrpay0111GXCHPHM2XXX02089996440303152170200000006560417DWQM4TK3JDO11VF38"
    "5204601653036085802PH5911SH*****E V.6006Umapad6104123463047E07",
)
KSHOP_BILL = (  # PromptPay bill payment (K Shop): 01 is the bank's biller id, 02 the shop
    "00020101021130810016A00000067701011201150107536000315080214KB0000016416840320KPS004KB000001641684"
    "31690016A00000067701011301030040214KB0000016416840420KPS004KB00000164168453037645802TH6304A14E",
    "00020101021230810016A00000067701011201150107536000315080214KB0000016159330320API1700277248174243"
    "631690016A00000067701011301030040214KB0000016159330420API170027724817424365303764540810295.53"
    "5802TH6304FDB7",
)
KHQR_INDIVIDUAL = (  # Bakong account id in the GUI's place, 02 the bank
    "00020101021129240010alice@aclb0206ACLEDA5204599953031165802KH5905ALICE6010Phnom Penh6304A9FF",
    "00020101021129220008bob@aclb0206ACLEDA5204599953031165802KH5903BOB6010Phnom Penh6304A0DE",
)


@pytest.mark.parametrize("pair", [GCASH_P2P, KSHOP_BILL, KHQR_INDIVIDUAL], ids=["gcash", "kshop", "khqr"])
def test_two_merchants_of_one_scheme_never_share_a_merchant_id(pair: tuple[str, str]) -> None:
    ids = []
    for code in pair:
        result = parse_qr(code)
        assert result.valid, result.errors
        ids.append(Merchant.from_qr(result, terminal_id="TV000001", name="SHOP").merchant_id)
    assert ids[0] != ids[1]
    assert ids[0] not in ("217020000000656", "010753600031508", "ACLEDA")  # the shared values
    # ... and each stays the same for the same code.
    assert ids[0] == Merchant.from_qr(parse_qr(pair[0]), terminal_id="TV000002", name="SHOP").merchant_id


def test_a_bakong_account_is_labelled_khqr_and_its_merchant_id_field_wins() -> None:
    result = parse_qr(KHQR_INDIVIDUAL[0])
    assert result.accounts[0].scheme == "KHQR"
    merchant_code = build_qr(
        name="COFFEE",
        city="Phnom Penh",
        country="KH",
        currency="KHR",
        mcc="5814",
        accounts=[{"tag": "30", "gui": "coffee@aclb", "fields": {"01": "MER123456", "02": "ACLEDA"}}],
    )
    assert Merchant.from_qr(parse_qr(merchant_code), terminal_id="KH000001").merchant_id == "MER123456"


def test_an_account_that_is_not_a_template_is_kept_whole_and_names_the_merchant() -> None:
    # Peru's Yape: tag 39 holds a bare 32-hex id, not sub-fields (genuine codes; the CRC is right).
    yape = (
        "0002010102113932969cde686e395bc6b28b0c3b05efd87a5204561153036045802PE5906YAPERO6004Lima6304BA65",
        "0002010102113932737c632348c2548381fc15352af1e6255204561153036045802PE5906YAPERO6004Lima6304CF93",
    )
    results = [parse_qr(code) for code in yape]
    assert all(r.valid for r in results), [r.errors for r in results]
    assert results[0].accounts[0].value == "969cde686e395bc6b28b0c3b05efd87a"
    assert any("not a template of sub-fields" in w for w in results[0].warnings)
    ids = {Merchant.from_qr(r, terminal_id="PE000001").merchant_id for r in results}
    assert len(ids) == 2
    # The merchant's accounts build back into the same code.
    m = Merchant.from_qr(results[0], terminal_id="PE000001")
    again = build_qr(name=m.name, city=m.city, country=m.country, currency=m.currency, mcc=m.mcc, accounts=m.accounts)
    assert parse_qr(again).accounts[0].value == "969cde686e395bc6b28b0c3b05efd87a"

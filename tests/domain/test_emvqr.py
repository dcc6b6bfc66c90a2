"""EMVCo merchant QR: a corpus of genuine public payloads, broken variants, and properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tillvault.domain.emvqr import MerchantAccount, build_qr, crc16_ccitt, parse_qr, require_valid_qr
from tillvault.errors import InvalidInput, QRCodeInvalid

# --- corpus ---------------------------------------------------------------------------------
# Genuine payloads published in public sources. Every CRC below was recomputed and matches;
# "source" names where the payload was published (found through public code search).
# (label, payload, expected fields: name, currency, country, scheme of the first account)
EMVCO_SAMPLE = (
    # EMVCo MPM specification v1.0, Appendix A example (China, tags 29/31, alternate language
    # 64 in Chinese), reproduced verbatim in mercari/go-emv-code and dongri/emv-qrcode tests.
    "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN"
    "5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京540523.7253031565502016233030412"
    "340603***0708A60086670902ME91320016A0112233449988770708123456786304A13A"
)
CORPUS: list[tuple[str, str, dict[str, object]]] = [
    (
        "emvco-spec-china",
        EMVCO_SAMPLE,
        {"merchant_name": "BEST TRANSPORT", "currency": "CNY", "country": "CN"},
    ),
    (
        # Same EMVCo example re-ordered with an unreserved template 80 (mercari/go-emv-code tests).
        "emvco-spec-tag80",
        "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115303156"
        "540523.725502015802CN5914BEST TRANSPORT6007BEIJING6233030412340603***0708A60086670902ME6420"
        "0002ZH0104最佳运输0202北京8036003239401ff0c21a4543a8ed5fbaa30ab02e81360032c2fbf6dd646f4f36b617"
        "f10747c0b96163046F32",
        {"merchant_city": "BEIJING", "amount_minor": 2372},
    ),
    (
        # Thailand PromptPay, Krungthai shop QR (bill payment, tag 30), from a public slip checker.
        "th-promptpay-bill",
        "00020101021130730016A0000006770101120115010753700088205021916151060181105030020307PIRASIT53037"
        "645802TH620807040000630443A3",
        {"currency": "THB", "country": "TH", "scheme": "PromptPay"},
    ),
    (
        # Thailand PromptPay, mobile 089-999-9999 (README of the promptpay-qr PHP library).
        "th-promptpay-mobile",
        "00020101021129370016A000000677010111011300668999999995802TH53037646304FE29",
        {"currency": "THB", "point_of_initiation": "static", "scheme": "PromptPay"},
    ),
    (
        # Singapore PayNow (SGQR) UEN code with amount, from a public Appium test of a PayNow app.
        "sg-paynow",
        "00020101021226560009SG.PAYNOW010120213201509555BNN1030100412230914205029520400005303702540450"
        ".05802SG5914DEV MERCHANT 56009SINGAPORE621601120870-0000VL663049149",
        {"merchant_name": "DEV MERCHANT 5", "currency": "SGD", "amount": "50.0", "scheme": "PayNow"},
    ),
    (
        # Malaysia DuitNow, the watr.org.my footer code (payload format indicator "02" as printed).
        "my-duitnow-watr",
        "00020201021126610014A000000615000101065018540215000001234079150031000000000005204866153034585"
        "802MY5913SIBKL WATR-QR6013PETALING JAYA6105463506215011110310300000630432FD",
        {"merchant_name": "SIBKL WATR-QR", "currency": "MYR", "scheme": "DuitNow"},
    ),
    (
        # Malaysia DuitNow via AsiaPay (a gateway's documented sample response), PFI "01".
        "my-duitnow-asiapay",
        "00020101021226600014A000000615000101068900460228JjXrENybjHu7ag3sShhEmDUh3amy520472985303458540"
        "115802MY5917AsiaPay-POS Sub 16006Kangar624005073UktVjo0725FUXkHSHGrI6uP98B4JsvUpybc64270002EN"
        "0117AsiaPay-POS Sub 163047BF7",
        {"currency": "MYR", "amount_minor": 100},
    ),
    (
        # Indonesia QRIS static merchant code (DANA + national QRIS tag 51), from a QRIS library test.
        "id-qris-static",
        "00020101021126570011ID.DANA.WWW011893600915303023251702090302325170303UMI51440014ID.CO.QRIS.WWW"
        "0215ID10265294489570303UMI5204737253033605802ID5914Raol Mukarrozi6015Kota Banjar Bar"
        "6105707316304E0BD",
        {"merchant_name": "Raol Mukarrozi", "currency": "IDR", "postal_code": "70731"},
    ),
    (
        # Indonesia QRIS dynamic (ShopeePay acquirer, amount, reference in 62/05), from Pakasir API docs.
        "id-qris-dynamic",
        "00020101021226610016ID.CO.SHOPEE.WWW01189360091800216005230208216005230303UME51440014ID.CO.QRIS"
        ".WWW0215ID10243228429300303UME5204792953033605409100003.005802ID5907Pakasir6012KAB. KEBUMEN610554"
        "39262230519SP25RZRATEQI2HQ65Q46304A079",
        {"amount_minor": 10000300, "point_of_initiation": "dynamic"},
    ),
    (
        # India Bharat QR (Visa 02, Mastercard 04, NPCI 06/08, UPI templates 26/27), Razorpay docs.
        "in-bharatqr",
        "000201010212021643926300000000850415540461000000008061661005900000000890827YESB0CMSNOC222333004"
        "882700126430010A0000005240117razorpaybqr@icici02041.1027350010A0000005240117RZPGT8ildsFTgS5Sp520"
        "47531530335654041.105802IN5906zxcbmn6005Delhi610611008562300514GT8ildsFTgS5Sp070838R004506304B6A9",
        {"currency": "INR", "amount": "1.10", "scheme": "Visa"},
    ),
    (
        # Vietnam VietQR (NAPAS, tag 38 with nested beneficiary template), a sample invoice in docs.
        "vn-vietqr",
        "00020101021238540010A00000072701240006970436011010234567890208QRIBFTTA5303704540719430005802VN"
        "62120808TT0000696304A8E5",
        {"currency": "VND", "amount_minor": 1943000, "scheme": "VietQR (NAPAS)"},
    ),
    (
        # Philippines QR Ph P2P (GCash), a public fixture of a QR upload checker.
        "ph-qrph-gcash",
        "00020101021127830012com.p2pqrpay0111GXCHPHM2XXX02089996440303152170200000006560417DWQM4TK3JDNW"
        "IWRDY5204601653036085802PH5908Setnayan6011Holy Spirit6104123463045E2D",
        {"merchant_name": "Setnayan", "currency": "PHP", "scheme": "QR Ph"},
    ),
    (
        # Philippines QR Ph P2M (Maya) with amount, a public test fixture.
        "ph-qrph-maya",
        "00020101021228500011ph.ppmi.p2m0111PAPHPHM1XXX0309102140529050331052047299530360854041.005802PH"
        "5903Rui6006Manila62440014com.paymaya.qr052228oYUr47CjKVCKh57wfb3s6304C116",
        {"merchant_name": "Rui", "amount_minor": 100},
    ),
    (
        # Hong Kong FPS with UnionPay tag 15 and an unreserved template 80, a QR tool's sample.
        "hk-fps-unionpay",
        "0002010102121531479803444798034459803449399006326450012hk.com.hkicl02091660695260512291231235959"
        "52049399530334454042.005802HK5902NA6002HK6293011900-12348A10798425380218001-202007260841000322"
        "63ee92126d3fb9ff7bed98041802150821101001445D80560013com.swiftpass021218157000200904190"
        "0-12348A10798425386304F335",
        {"currency": "HKD", "scheme": "UnionPay"},
    ),
    (
        # Hong Kong FPS with reference 62/05, from Odoo's account_qr_code_emv tests.
        "hk-fps-odoo",
        "00020101021226330012hk.com.hkicl0313+852-6789123452040000530334454031005802HK5914company_1_data"
        "6002HK62170513INV/TEST/00016304A154",
        {"merchant_name": "company_1_data", "scheme": "FPS"},
    ),
    (
        # Brazil Pix (no point-of-initiation tag; 62/05 txid), a public shop's "copia e cola" data.
        "br-pix",
        "00020126500014BR.GOV.BCB.PIX0128mariannavidal12345@gmail.com520400005303986540580.005802BR5923"
        "Marianna Vidal da Silva6009SAO PAULO62140510Uog7w1SbFq63044416",
        {"currency": "BRL", "amount_minor": 8000, "scheme": "Pix"},
    ),
    (
        # Cambodia KHQR, sample in the National Bank of Cambodia KHQR SDK document (Khmer 64).
        "kh-khqr",
        "00020101021229460015john_smith@devb0111855122334550208Dev Bank52045999530384054031005802KH5910"
        "John Smith6010PHNOM PENH62670106#123450211855122334550311Coffee Shop0709Cashier_10810Buy coffee"
        "64280002km0108ចន ស្មីន0206ភ្នំពញ993400131726821915797011317268220357976304B73E",
        {"merchant_name": "John Smith", "currency": "USD", "amount_minor": 10000},
    ),
]


@pytest.mark.parametrize(("label", "payload", "expected"), CORPUS, ids=[c[0] for c in CORPUS])
def test_genuine_public_payloads_parse_as_valid_with_their_fields(
    label: str, payload: str, expected: dict[str, object]
) -> None:
    result = parse_qr(payload)
    assert result.errors == []
    assert result.valid and result.crc_ok
    assert result.accounts, label
    for key, value in expected.items():
        got = result.accounts[0].scheme if key == "scheme" else getattr(result, key)
        assert got == value, key


def test_emvco_sample_details_are_read_from_nested_templates() -> None:
    result = parse_qr(EMVCO_SAMPLE)
    assert [a.tag for a in result.accounts] == ["29", "31"]
    assert result.accounts[0].gui == "D15600000000"
    assert result.accounts[0].fields == {"05": "A93FO3230Q"}
    assert result.alternate_language == {"language": "ZH", "name": "最佳运输", "city": "北京"}
    assert result.additional_data["store_label"] == "1234"
    assert result.additional_data["terminal_label"] == "A6008667"
    assert result.tip == {"indicator": "prompt"}
    assert result.unreserved["91"] == {"00": "A011223344998877", "07": "12345678"}
    assert result.mcc == "4111" and result.point_of_initiation == "dynamic"


def test_vietqr_beneficiary_is_unpacked_from_the_nested_sub_template() -> None:
    account = parse_qr(CORPUS[10][1]).accounts[0]
    assert account.nested == {"01": {"00": "970436", "01": "1023456789"}}
    assert account.merchant_id_candidates()[0] == "1023456789"


def test_missing_name_and_city_are_warnings_not_errors() -> None:
    result = parse_qr("00020101021129370016A000000677010111011300668999999995802TH53037646304FE29")
    assert result.valid
    assert any("tag 59: missing" in w for w in result.warnings)
    assert any("tag 60: missing" in w for w in result.warnings)
    assert any("tag 52: missing" in w for w in result.warnings)


def test_duitnow_payload_format_02_is_accepted_with_a_warning() -> None:
    result = parse_qr(CORPUS[5][1])
    assert result.valid and result.payload_format == "02"
    assert any("tag 00" in w for w in result.warnings)


def test_lowercase_crc_is_accepted_with_a_warning() -> None:
    # Genuine Bharat QR printed with a lowercase CRC (an e-invoice sample in public C# code).
    payload = (
        "000201010211021644038499331959060415522024099331959061661000309933195920825HDFC000000150100308128"
        "20026560010A0000005240138centralwarehousingco.99331959@hdfcbank27430010A0000005240125STQ200318122"
        "305804I0401085204939953033565802IN5923CENTRAL WAREHOUSING NEW6009New Delhi610611001662410525STQ20"
        "0318122305804I0401080708993319596304e9fc"
    )
    result = parse_qr(payload)
    assert result.valid and result.crc_ok
    assert "tag 63: CRC e9fc is lowercase; accepted (EMVCo writes E9FC)" in result.warnings


# --- broken variants ------------------------------------------------------------------------

BASE = CORPUS[4][1]  # Singapore PayNow


def test_one_changed_character_fails_the_crc_with_expected_value() -> None:
    broken = BASE.replace("DEV MERCHANT 5", "DEV MERCHANT 6")
    result = parse_qr(broken)
    assert not result.valid and not result.crc_ok
    assert result.errors == [f"tag 63: CRC is 9149, expected {build_crc(broken[:-4])}"]
    assert result.merchant_name == "DEV MERCHANT 6"  # the rest still parses


def tlv(tag: str, value: str) -> str:
    return f"{tag}{len(value):02d}{value}"


ACCOUNT = tlv("26", tlv("00", "SG.PAYNOW") + tlv("01", "0") + tlv("02", "+6598765432"))


def test_wrong_crc_reports_found_and_expected_uppercase() -> None:
    body = "000201010211" + ACCOUNT + "5204000053037025802SG5902NA6002SG6304"
    good = build_crc(body)
    bad_digit = "0" if good[-1] != "0" else "1"
    result = parse_qr(body + good[:-1] + bad_digit)
    assert result.errors == [f"tag 63: CRC is {(good[:-1] + bad_digit).upper()}, expected {good}"]


def build_crc(body: str) -> str:
    return f"{crc16_ccitt(body.encode()):04X}"


def test_documentation_vector_with_a_wrong_crc_is_caught() -> None:
    # The HKMA FPS sample as copied in public code: its printed CRC 84E1 is wrong (D1A3 is right).
    result = parse_qr("00020101021226270012hk.com.hkicl0207999999952040000530334454031235802HK5902NA6002HK630484E1")
    assert result.errors == ["tag 63: CRC is 84E1, expected D1A3"]


def test_wrong_length_digit_breaks_the_structure_and_names_the_position() -> None:
    broken = BASE.replace("5914DEV MERCHANT 5", "5915DEV MERCHANT 5")
    result = parse_qr(broken)
    assert not result.valid
    assert any("position" in e for e in result.errors)


def test_truncated_payload_reports_declared_and_remaining_length() -> None:
    payload = "000201010211" + "26250009SG.PAYNOW010812345678" + "5920ABCDEFGHIJKL"
    result = parse_qr(payload)
    assert result.errors[0].startswith("truncated at position 41: tag 59 declares length 20 but 12 characters remain")
    assert not result.valid and not result.crc_ok


def test_truncated_before_crc_is_invalid() -> None:
    result = parse_qr(BASE[:-10])
    assert not result.valid
    assert any(e.startswith("truncated at position") for e in result.errors)


def test_missing_crc_is_an_error() -> None:
    result = parse_qr(BASE[:-8])
    assert "tag 63: missing (the payload must end with the CRC field 6304XXXX)" in result.errors
    assert not result.crc_ok


def test_trailing_newline_is_stripped_with_a_warning() -> None:
    result = parse_qr(BASE + "\n")
    assert result.valid and result.crc_ok
    assert any("trailing newline" in w for w in result.warnings)
    result = parse_qr("  " + BASE + " \r\n")
    assert result.valid and any("whitespace" in w for w in result.warnings)


def test_crc_field_with_wrong_length_is_reported() -> None:
    body = BASE[:-8] + "63050ABCD"
    assert "tag 63: length must be 04, found 05" in parse_qr(body).errors


def test_crc_that_is_not_hex_is_reported() -> None:
    assert "tag 63: CRC 'XYZW' is not 4 hex digits" in parse_qr(BASE[:-4] + "XYZW").errors


def test_non_digit_length_is_reported() -> None:
    assert (
        parse_qr("00020101021115A1" + "x" * 20)
        .errors[0]
        .startswith("position 12: tag 15 has length 'A1', which is not two digits")
    )
    assert parse_qr("0002010102115A" + "x" * 20).errors[0].startswith("position 12: tag id '5A' is not two digits")
    assert parse_qr("0002010102112X").errors[0] == (
        "truncated at position 12: 2 character(s) left, a tag needs at least 4 (2-digit id and 2-digit length)"
        " (a wrong length earlier? tag 01 at position 6 declared 2)"
    )


def with_crc(body: str) -> str:
    return body + "6304" + build_crc(body + "6304")


def test_duplicate_tag_is_an_error() -> None:
    result = parse_qr(with_crc("000201010211" + ACCOUNT + "52040000530370258" + "02SG5802SG5902NA6002SG"))
    assert any(e.startswith("tag 58: duplicate") for e in result.errors)


def test_payload_format_must_come_first() -> None:
    result = parse_qr(with_crc("010211000201" + ACCOUNT + "520400005303702580" + "2SG5902NA6002SG"))
    assert "tag 00: must be the first field (found at position 6)" in result.errors


def test_crc_must_be_the_last_field() -> None:
    body = "000201010211" + ACCOUNT + "520400005303702"
    crc_first = body + "6304" + build_crc(body + "6304") + "5802SG"
    assert f"tag 63: must be the last field (found at position {len(body)})" in parse_qr(crc_first).errors


def test_unknown_currency_and_missing_country_are_errors() -> None:
    result = parse_qr(with_crc("000201010211" + ACCOUNT + "52040000530399959" + "02NA6002SG"))
    assert "tag 53: currency 999 is not an ISO 4217 code" in result.errors
    assert "tag 58: missing (country code)" in result.errors


def test_no_merchant_account_is_an_error() -> None:
    result = parse_qr(with_crc("00020101021152040000530370258" + "02SG5902NA6002SG"))
    assert "no merchant account information (tags 02-51): the code names no one to pay" in result.errors


def test_bad_amount_mcc_country_and_initiation_are_errors() -> None:
    body = "000201010213" + ACCOUNT + "5203ABC5303702" + tlv("54", "12.34") + "5802sg5902NA6002SG"
    result = parse_qr(with_crc(body))
    assert "tag 01: point of initiation '13' is not 11 (static) or 12 (dynamic)" in result.errors
    assert "tag 52: merchant category code 'ABC' is not 4 digits" in result.errors
    assert "tag 58: country 'sg' is not 2 capital letters (ISO 3166-1 alpha-2)" in result.errors
    assert not any(e.startswith("tag 54") for e in result.errors)
    too_precise = parse_qr(with_crc("000201010212" + ACCOUNT + "52040000530370254061.2345" + "5802SG"))
    assert "tag 54: amount 1.2345 has 4 decimals; SGD allows 2" in too_precise.errors


def test_account_template_without_gui_is_an_error() -> None:
    result = parse_qr(with_crc("000201010211" + "26110107ABCDEFG" + "520400005303702" + "5802SG"))
    assert "tag 26: sub-tag 00 (globally unique identifier) missing" in result.errors


def test_tip_fixed_fee_requires_tag_56() -> None:
    result = parse_qr(with_crc("000201010211" + ACCOUNT + "5204000053037025502025802SG"))
    assert "tag 56: missing (tag 55 = 02 needs a fixed convenience fee)" in result.errors


def test_require_valid_qr_raises_with_every_error() -> None:
    with pytest.raises(QRCodeInvalid) as info:
        require_valid_qr(BASE[:-8])
    assert info.value.errors == parse_qr(BASE[:-8]).errors
    assert "merchant QR code is invalid" in str(info.value)
    assert require_valid_qr(BASE).merchant_name == "DEV MERCHANT 5"


@pytest.mark.parametrize("junk", [None, 12, b"\xff\xfe", "", "   ", "\n", "6304", "0002", "\ud800abc"])
def test_junk_input_gives_errors_not_exceptions(junk: object) -> None:
    result = parse_qr(junk)
    assert not result.valid and result.errors


def test_crc16_matches_the_ccitt_false_check_value() -> None:
    assert crc16_ccitt(b"123456789") == 0x29B1


# --- properties -----------------------------------------------------------------------------

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_fuzz_random_input_never_raises(data: str | bytes) -> None:
    result = parse_qr(data)
    assert result.valid == (not result.errors)
    assert not any(e.startswith("internal error") for e in result.errors)
    assert isinstance(result.to_dict(), dict)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    payload = draw(st.sampled_from([c[1] for c in CORPUS]))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(payload)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = draw(st.characters(codec="utf-8"))
        if op == "insert":
            payload = payload[:i] + ch + payload[i:]
        elif op == "delete":
            payload = payload[:i] + payload[i + 1 :]
        else:
            payload = payload[:i] + ch + payload[i + 1 :]
    return payload


@FAST
@given(mutated())
def test_fuzz_mutated_genuine_codes_never_raise_and_valid_implies_crc(payload: str) -> None:
    result = parse_qr(payload)
    assert result.valid == (not result.errors)
    assert not any(e.startswith("internal error") for e in result.errors)
    if result.valid:
        assert result.crc_ok


NAME_CHARS = st.characters(
    codec="utf-8",
    categories=("Lu", "Ll", "Lo", "Nd", "Zs", "Pd", "Po"),
    exclude_characters="\u2028\u2029",
)
CHINESE = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)


def label(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.one_of(NAME_CHARS, CHINESE), min_size=1, max_size=max_size).filter(lambda s: s.strip() != "")


@st.composite
def qr_inputs(draw: st.DrawFn) -> dict[str, object]:
    currency = draw(st.sampled_from(["CNY", "JPY", "USD", "KWD", "THB", "VND"]))
    n_accounts = draw(st.integers(1, 3))
    accounts = [
        MerchantAccount(
            gui=draw(st.sampled_from(["A000000333", "br.gov.bcb.pix", "SG.PAYNOW", "A000000677010111"])),
            fields={"01": draw(st.text("0123456789ABCDEF@.", min_size=1, max_size=20))},
        )
        for _ in range(n_accounts)
    ]
    extra = draw(st.dictionaries(st.sampled_from(["bill_number", "reference_label", "terminal_label"]), label(25)))
    alt = draw(st.none() | st.builds(lambda n, c: {"language": "ZH", "name": n, "city": c}, label(25), label(15)))
    return {
        "name": draw(label(25)),
        "city": draw(label(15)),
        "country": draw(st.sampled_from(["CN", "SG", "TH", "BR"])),
        "currency": currency,
        "mcc": draw(st.from_regex(r"\A[0-9]{4}\Z")),
        "accounts": accounts,
        "amount": draw(st.none() | st.integers(0, 10**9)),
        "additional_data": extra or None,
        "alternate_language": alt,
    }


@FAST
@given(qr_inputs())
def test_round_trip_parse_of_build_gives_back_every_field(x: dict[str, object]) -> None:
    payload = build_qr(**x)  # type: ignore[arg-type]
    result = parse_qr(payload)
    assert result.errors == [] and result.crc_ok
    assert result.merchant_name == x["name"] and result.merchant_city == x["city"]
    assert (result.country, result.currency, result.mcc) == (x["country"], x["currency"], x["mcc"])
    assert result.amount_minor == x["amount"]
    assert result.point_of_initiation == ("static" if x["amount"] is None else "dynamic")
    accounts = x["accounts"]
    assert isinstance(accounts, list)
    assert [(a.gui, a.fields) for a in result.accounts] == [(a.gui, a.fields) for a in accounts]
    assert result.additional_data == (x["additional_data"] or {})
    assert result.alternate_language == x["alternate_language"]


def test_chinese_name_length_is_counted_in_characters() -> None:
    payload = build_qr(
        name="北京朝阳区张三便利店",
        city="北京",
        country="CN",
        currency="CNY",
        mcc="5411",
        accounts=[{"gui": "A000000333", "fields": {"01": "123456789012345"}}],
        amount=1234,
    )
    assert "5910北京朝阳区张三便利店" in payload
    result = parse_qr(payload)
    assert result.valid and result.merchant_name == "北京朝阳区张三便利店" and result.amount == "12.34"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "x" * 26}, "merchant name has 26 characters; EMVCo allows at most 25"),
        ({"city": ""}, "merchant city is required"),
        ({"country": "China"}, "country 'China' is not 2 capital letters (ISO 3166-1 alpha-2)"),
        ({"currency": "XYZ"}, "currency 'XYZ' is not an ISO 4217 code"),
        ({"mcc": "54111"}, "merchant category code '54111' is not 4 digits"),
        ({"accounts": []}, "at least one merchant account is required"),
        ({"amount": -1}, "amount must be a non-negative int of minor units, not -1"),
        ({"amount": 10**13}, "characters; EMVCo allows 13"),
        ({"accounts": [{"gui": "A000000333", "fields": {"1": "x"}}]}, "sub-tag '1' is not two digits"),
    ],
)
def test_build_refuses_bad_fields_naming_them(change: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "name": "Shop",
        "city": "Beijing",
        "country": "CN",
        "currency": "CNY",
        "mcc": "5411",
        "accounts": [{"gui": "A000000333", "fields": {"01": "1"}}],
    }
    with pytest.raises(InvalidInput, match=re.escape(message)):
        build_qr(**{**fields, **change})  # type: ignore[arg-type]


SG_HEAD = "000201010211" + ACCOUNT + "52045812" + "5303702" + "5802SG"


def test_a_name_length_that_swallows_the_crc_is_named_not_a_missing_crc() -> None:
    rest = "6009Singapore" + "6304"
    body = SG_HEAD + f"59{len('KOPI CORNER') + len(rest) + 4:02d}KOPI CORNER" + rest
    errors = parse_qr(body + build_crc(body)).errors
    assert errors == [
        f"tag 59: declared length 32 at position {len(SG_HEAD)} runs to the end of the payload, taking in the "
        f"CRC field 6304{build_crc(body)} (the length is wrong)"
    ]


def test_a_length_overrun_points_at_the_field_that_declared_it() -> None:
    body = SG_HEAD + "5917KOPI CORNER6009Singapore6304"
    errors = parse_qr(body + build_crc(body)).errors
    assert errors and f"tag 59 at position {len(SG_HEAD)} declared 17" in errors[0]


def test_text_after_the_crc_is_named_as_such() -> None:
    good = with_crc(SG_HEAD + "5902NA6002SG")
    assert parse_qr(good).valid
    errors = parse_qr(good + "XYZ").errors
    assert errors == [
        f"tag 63: 3 character(s) after the CRC field, from position {len(good)} ('XYZ'): the CRC must end the payload"
    ]


@pytest.mark.parametrize("bad", ["\x1b", "\x00", "\x7f", "\x9b", "\u202e", "\u2066"])
def test_control_characters_in_a_field_are_refused_with_tag_and_position(bad: str) -> None:
    name = f"SHOP{bad}PWN"
    result = parse_qr(with_crc(SG_HEAD + f"59{len(name):02d}{name}" + "6002SG"))
    assert not result.valid
    assert f"tag 59: control character U+{ord(bad):04X} at position {len(SG_HEAD) + 8} (not text)" in result.errors


def btlv(tag: str, value: str) -> str:
    """A field whose length counts UTF-8 bytes, as some generators wrongly do."""
    return f"{tag}{len(value.encode()):02d}{value}"


def test_lengths_counted_in_bytes_are_read_as_bytes_with_a_warning_never_swallowing_a_field() -> None:
    account = tlv("15", "31621002390000000089831014816000")
    # Read by characters this one is "valid" with the city inside the name: the byte reading wins.
    body = "000201010211" + account + "52045411530315658" + "02CN" + btlv("59", "张三便利店") + tlv("60", "Sydney")
    result = parse_qr(body + "6304" + build_crc(body + "6304"))
    assert result.valid, result.errors
    assert (result.merchant_name, result.merchant_city) == ("张三便利店", "Sydney")
    assert any("UTF-8 bytes" in w for w in result.warnings)
    # Inside a template too (tag 64): read by characters it takes in the CRC field.
    lang = btlv("64", tlv("00", "ZH") + btlv("01", "张三便利店"))
    body = "000201010211" + account + "52045411530315658" + "02CN5904ZSBL6007Beijing" + tlv("62", "0102A1") + lang
    result = parse_qr(body + "6304" + build_crc(body + "6304"))
    assert result.valid and result.alternate_language == {"language": "ZH", "name": "张三便利店"}
    assert result.additional_data == {"bill_number": "A1"}
    # Read by characters this one is broken: by bytes it is whole.
    body = "000201010211" + account + "52045812530397858" + "02FR" + btlv("59", "Café Crème") + tlv("60", "Paris")
    result = parse_qr(body + "6304" + build_crc(body + "6304"))
    assert result.valid and result.merchant_name == "Café Crème"


def test_a_code_that_counts_characters_is_read_by_characters() -> None:
    payload = build_qr(name="张三便利店", city="北京", country="CN", currency="CNY", mcc="5411",
                       accounts=[{"gui": "A000000333", "fields": {"01": "898110000000001"}}])  # fmt: skip
    result = parse_qr(payload)
    assert result.valid and result.merchant_name == "张三便利店" and result.merchant_city == "北京"
    assert not any("UTF-8 bytes" in w for w in result.warnings)
    # A code broken both ways keeps the character reading's errors.
    assert not parse_qr(payload.replace("5905张三", "5907张三")).valid


def _sg(name: str = "NA", city: str = "SG", amount: str | None = None, currency: str = "702") -> str:
    body = "000201010211" + ACCOUNT + "520400005303" + currency + "5802SG" + tlv("59", name) + tlv("60", city)
    if amount is not None:
        body = body.replace("5802SG", tlv("54", amount) + "5802SG")
    return body + "6304" + build_crc(body + "6304")


def test_a_line_break_inside_the_code_is_named_first() -> None:
    payload = _sg()
    wrapped = payload[:40] + "\n" + payload[40:]
    result = parse_qr(wrapped)
    assert not result.valid and result.errors[0].startswith("position 40: a line break inside the payload")
    assert sum("U+000A" in e for e in result.errors) == 1


def test_blank_name_or_city_is_a_warning_naming_the_init_option() -> None:
    result = parse_qr(_sg(name="   ", city=" "))
    assert result.valid
    assert any(w.startswith("tag 59: merchant name is blank") and "--merchant-name" in w for w in result.warnings)
    assert any(w.startswith("tag 60: merchant city is blank") for w in result.warnings)


def test_an_amount_with_too_many_decimals_is_not_reported_as_the_amount() -> None:
    result = parse_qr(_sg(amount="10.505"))
    assert not result.valid and result.amount is None and result.amount_minor is None
    assert "tag 54: amount 10.505 has 3 decimals; SGD allows 2" in result.errors
    assert parse_qr(_sg(amount="10.5", currency="392")).errors == ["tag 54: amount 10.5 has 1 decimal; JPY allows 0"]


def test_a_byte_order_mark_is_named_as_such() -> None:
    result = parse_qr("\ufeff" + _sg())
    assert result.valid and result.warnings[0].startswith("removed a byte order mark")


@pytest.mark.parametrize("name", ["北京 2000", "Crème Brûlée Café 2000", "北京 6100", "张三 5802CN"])
def test_a_valid_code_that_counts_characters_is_never_reread_by_bytes(name: str) -> None:
    payload = build_qr(name=name, city="北京", country="CN", currency="CNY", mcc="5411",
                       accounts=[{"gui": "A000000333", "fields": {"01": "898110000000001"}}])  # fmt: skip
    result = parse_qr(payload)
    assert result.valid and result.merchant_name == name and result.merchant_city == "北京"
    assert not any("UTF-8 bytes" in w for w in result.warnings)


def _recrc(body_with_6304: str) -> str:
    return body_with_6304 + build_crc(body_with_6304)


@pytest.mark.parametrize(
    ("old", "new", "first_error"),
    [
        ("2656", "2655", "tag 26: the declared length 55 at position 14 looks wrong: read as 56"),
        ("5914DEV", "5913DEV", "tag 59: the declared length 13 at position 103 looks wrong: read as 14"),
        ("6216", "6217", "tag 62: the declared length 17 at position 134 looks wrong: read as 16"),
        ("0009SG.", "0008SG.", "tag 26: sub-tag 00: the declared length 08 at position 18 looks wrong: read as 09"),
    ],
)
def test_one_wrong_length_is_named_first_even_when_the_crc_was_computed_over_it(
    old: str, new: str, first_error: str
) -> None:
    # The generator wrote a wrong length and computed the CRC over it: every field after it is
    # garbled (tag 53 "missing", tags that do not exist). The length to mend comes first.
    broken = _recrc(BASE[:-4].replace(old, new, 1))
    result = parse_qr(broken)
    assert not result.valid
    assert result.errors[0].startswith(first_error), result.errors


def test_a_payload_inside_a_link_is_named_as_a_link_not_a_crc_error() -> None:
    result = parse_qr("https://api.qrserver.com/v1/create-qr-code/?size=300x300&data=" + BASE)
    assert result.errors == [
        "payload is a link (https:...), not an EMV merchant QR payload; the EMV payload inside starts at "
        "position 62 ('000201...'): give only the payload"
    ]
    assert parse_qr("upi://pay?pa=shop@bank&pn=Shop").errors[0].startswith("payload is a link (upi:...)")


def test_text_decoded_from_bytes_that_were_not_utf8_is_named_without_a_false_crc_error() -> None:
    result = parse_qr("0002010102115905Caf\udce9")
    assert result.errors == [
        "position 19: unpaired surrogate U+DCE9 (not valid Unicode: bytes that were not UTF-8 were read as text?)"
    ]
    assert parse_qr(b"0002010102115905Caf\xe9").errors == ["payload is not valid UTF-8 (byte 19)"]


@pytest.mark.parametrize(("code", "message"), [("XX", "is not an ISO 3166-1"), ("UK", "it is GB")])
def test_a_country_that_iso_3166_does_not_assign_is_an_error(code: str, message: str) -> None:
    result = parse_qr(_recrc(BASE[:-4].replace("5802SG", f"5802{code}", 1)))
    assert [e for e in result.errors if e.startswith("tag 58")] and message in result.errors[0]
    with pytest.raises(InvalidInput, match=message):
        build_qr(name="A", city="B", country=code, currency="SGD", mcc="5812", accounts=[{"gui": "SG.PAYNOW"}])


def test_an_account_that_opens_with_the_identifier_but_is_cut_is_an_error_not_a_plain_value() -> None:
    broken = _recrc(BASE[:-4].replace("0009SG.", "0099SG.", 1))  # the GUI's length garbled
    assert not parse_qr(broken).valid

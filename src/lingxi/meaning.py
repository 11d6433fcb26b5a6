"""Meaning signatures: the words that flip what a text says while barely moving an embedding.

Used by the semantic cache's guard (two near-identical questions that ask different things) and
by the knowledge base's citation check (a cited sentence that changes a source's number or
negation is not supported by it).

An embedding puts "How do I enable 2FA?" and "How do I disable 2FA?", or "明天北京会下雨吗" and
"明天上海会下雨吗", very close together; serving one's answer for the other is the worst thing a
cache can do. Before a semantic hit is served, :func:`meaning_differs` compares the *signatures*
of the two texts — the parts that flip a meaning while barely moving an embedding — and refuses
the hit when any of them differ:

- negation: English ``not``/``n't``/``never``/``no``/``without``…, Chinese 不/没/没有/非/别/无/未/勿…
  (words that only contain such a character, like 非常 "very", 别人 "others" or 不过 "but", do not count);
- numbers: digits, English number words and Chinese numerals, all read as values (``3`` = three = 三);
- dates and times: month and weekday names, relative days (tomorrow, 明天, 下周一…);
- named entities: English capitalised words and acronyms (``iPhone``, ``NASA``, ``Paris``) and Chinese
  person/place/organisation names (jieba part-of-speech ``nr``/``ns``/``nt``/``nz``);
- comparatives and direction: more/less, better/worse, -er than…, 更X/最X/比/大于/以上…,
  and pairs of opposite verbs (buy/sell, 买/卖, enable/disable, 增加/减少…);
- direction: "convert km to miles" / "convert miles to km", 把PDF转换成Word / 把Word转换成PDF;
- what is asked: why / when / where / who / how many (为什么 / 什么时候 / 哪里 / 谁 / 多少) — one
  text may leave the question word (or a comparative) implicit, but two different ones differ;
- a swapped topic word (optional, ``substitution=True``): each text has a content word the other
  lacks ("symptoms" / "treatments of the flu", 狗 / 猫). Paraphrases that swap synonyms
  ("turn on" / "enable") fail this check too, so it trades hits for safety.

Entities are matched across the two texts: a name one text capitalises and the other writes in
lower case, inflects ("Australia's") or embeds in a longer Chinese word still counts as the same.

The guard only ever *refuses* hits; it never creates one. It is lexical and deliberately strict:
a refused paraphrase costs one model call, a served non-paraphrase costs a wrong answer.
Chinese entity and noun tagging uses jieba through :mod:`lingxi.text`, loaded on the first Chinese text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from lingxi.text import has_cjk, is_cjk, pos_words

__all__ = ["Signature", "signature", "meaning_differs"]

_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*[A-Za-z]|[A-Za-z]|\d+(?:[.,]\d+)*%?")

# ---------------------------------------------------------------- English lexicons

_EN_NEG = {
    "not", "no", "never", "none", "nothing", "nobody", "nowhere", "neither", "nor", "without",
    "cannot", "cant", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "wont",
    "wouldnt", "shouldnt", "couldnt", "havent", "hasnt", "hadnt", "mustnt", "neednt", "aint",
}
_EN_NUMBERS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
    "thousand": 1000, "million": 10**6, "billion": 10**9, "first": 1, "second": 2, "third": 3,
    "fourth": 4, "fifth": 5, "half": 0.5, "dozen": 12, "twice": 2, "double": 2, "triple": 3,
}
_EN_DATES = {
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "today", "tomorrow", "yesterday", "tonight", "morning", "afternoon", "evening", "weekend",
    "ago", "next", "last", "spring", "summer",
    "autumn", "fall", "winter",
}
# A date word only counts where it can mean a date ("may" the month vs "may" the verb).
_EN_AMBIGUOUS_DATES = {"may", "march", "fall", "last", "next", "spring"}
_EN_COMPARATIVES = {
    "more", "most", "less", "least", "fewer", "fewest", "better", "best", "worse", "worst",
    "greater", "larger", "largest", "bigger", "biggest", "smaller", "smallest", "higher", "highest",
    "lower", "lowest", "faster", "fastest", "slower", "slowest", "cheaper", "cheapest", "older",
    "oldest", "younger", "youngest", "longer", "longest", "shorter", "shortest", "stronger",
    "strongest", "weaker", "weakest", "easier", "easiest", "harder", "hardest", "safer", "safest",
    "heavier", "lighter", "warmer", "colder", "hotter", "richer", "poorer", "above", "below",
    "over", "under", "before", "after", "earlier", "later", "max", "maximum", "min", "minimum",
}
# Each word names its side of an opposition ("a|b" lists words of one side); texts that pick
# different sides of one pair differ.
_OPPOSITES = [
    ("buy", "sell"), ("bought", "sold"), ("enable", "disable"), ("enabled", "disabled"),
    ("increase", "decrease"), ("add", "remove"), ("install", "uninstall"), ("open", "close"),
    ("start", "stop"), ("win|won|wins", "lose|lost|loses"), ("up", "down"), ("soft", "hard"),
    ("boil|boiling", "freeze|freezing"), ("subscribe", "unsubscribe"), ("maximum", "minimum"), ("import", "export"), ("upload", "download"),
    ("encrypt", "decrypt"), ("allow", "deny"), ("accept", "reject"), ("lock", "unlock"),
    ("on", "off"), ("min", "max"), ("left", "right"), ("inbound", "outbound"),
    ("true", "false"), ("positive", "negative"), ("hot", "cold"), ("male", "female"),
    ("north", "south"), ("east", "west"), ("input", "output"), ("login", "logout"),
    ("push", "pull"), ("send", "receive"), ("borrow", "lend"), ("before", "after"),
    ("advantages", "disadvantages"), ("pros", "cons"), ("benefits", "risks"),
    ("买", "卖"), ("开启|打开|启用|开通", "关闭|禁用|停用|关掉"), ("增加", "减少"), ("上升", "下降"),
    ("涨", "跌"), ("安装", "卸载"), ("上传", "下载"), ("加密", "解密"), ("登录", "退出"),
    ("允许", "禁止"), ("接受", "拒绝"), ("优点", "缺点"), ("好处", "坏处"), ("输入", "输出"),
    ("进口", "出口"), ("借入", "借出"), ("发送", "接收"), ("左", "右"), ("男", "女"), ("冷", "热"),
    ("南", "北"), ("东", "西"), ("大", "小"), ("开门", "关门"), ("涨价", "降价"), ("之前", "之后"), ("以前", "以后"), ("最大", "最小"), ("最高", "最低"),
]
_EN_INTENTS = {
    "why": "reason", "when": "time", "where": "place", "who": "person", "whom": "person",
    "whose": "person",
}
# Words that start a sentence without being a name.
_EN_COMMON_INITIAL = {
    "a", "an", "the", "what", "whats", "what's", "how", "hows", "why", "when", "where", "who", "which",
    "whom", "whose", "is", "are", "was", "were", "do", "does", "did", "can", "could", "should",
    "would", "will", "shall", "may", "might", "must", "have", "has", "had", "i", "im", "i'm", "my",
    "me", "we", "our", "you", "your", "it", "its", "it's", "this", "that", "these", "those", "there",
    "please", "tell", "give", "show", "list", "explain", "describe", "write", "make", "help", "find",
    "let", "lets", "let's", "in", "on", "at", "for", "from", "to", "with", "by", "of", "about",
    "if", "and", "or", "but", "so", "any", "some", "all", "each", "every", "no", "not", "yes",
    "hi", "hello", "hey", "thanks", "thank", "ok", "okay", "now", "then", "also", "just", "get",
    "summarize", "summarise", "translate", "compare", "define", "name", "suggest", "recommend",
    "create", "generate", "convert", "calculate", "compute", "check", "fix", "set", "use", "using",
    "instructions", "steps", "ways", "way", "best", "good", "quick", "simple", "short", "brief",
    "could", "would", "share", "walk", "guide", "teach", "need", "want", "looking", "tips",
    "meaning", "definition", "difference", "differences", "one", "two", "three", "another",
    "other", "many", "much", "most", "more", "less", "few", "like", "as", "than", "into",
    "resetting", "reset", "install", "installing", "enable", "enabling", "disable", "disabling",
    "change", "changing", "cancel", "cancelling", "canceling", "delete", "deleting", "remove",
    "removing", "add", "adding", "update", "updating", "turn", "turning", "open", "opening",
    "close", "closing", "start", "starting", "stop", "stopping", "what’s", "i’m", "it’s", "let’s",
}

# ---------------------------------------------------------------- Chinese lexicons

_ZH_NEG = re.compile(r"没有|不|没|非|别|无|未|勿|莫|否|甭|休想")
# Words that contain a negation character without negating anything.
_ZH_NOT_NEG = [
    "非常", "非洲", "是非", "除非", "莫斯科", "莫名", "别人", "别的", "特别", "区别", "分别", "类别", "级别",
    "性别", "告别", "识别", "辨别", "差别", "个别", "别墅", "鉴别", "派别", "组别", "无论", "无线", "无人机",
    "未来", "不过", "不错", "不仅", "不但", "不断", "不久", "不管", "不如", "不同", "不得不", "否则",
    "是否", "能否", "可否", "要不要", "是不是", "会不会", "能不能", "可不可以", "有没有", "对不对", "好不好",
    "行不行", "用不用", "需不需要", "要不", "不然", "无疑", "毫无疑问", "莫过于",
]
_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10**4, "亿": 10**8}
_ZH_NUMERAL = re.compile(r"[零〇一二两三四五六七八九十百千万亿]+")
# Words that contain a numeral character without being a number.
_ZH_NOT_NUMBER = [
    "一下", "一些", "一起", "一样", "一般", "一直", "一定", "一切", "一点", "一旦", "一边", "一共", "一致",
    "一概", "一向", "一番", "一时", "一度", "统一", "唯一", "万一", "一律", "同一", "一体", "专一", "之一",
    "第一次", "一会儿", "一部分", "不一", "一种", "一个", "一款", "一篇", "一段", "一首", "一封", "一份",
    "一句", "一条", "一只", "一位", "一名", "一门", "一本", "一张", "一套", "一项", "千万", "万物", "百度",
    "千克", "三明治", "十分", "万里长城", "七夕", "一带一路", "百科", "百分比",
]
_ZH_DATES = re.compile(
    r"(?:上|下|这|本)个?(?:周|星期|礼拜)[一二三四五六日天末]?|"
    r"今天|明天|后天|昨天|前天|今晚|明晚|昨晚|今早|明早|今年|明年|去年|前年|后年|"
    r"本月|上个?月(?![球亮光饼])|下个?月(?![球亮光饼])|这个月|周[一二三四五六日末]|星期[一二三四五六日天]|礼拜[一二三四五六日天]|"
    r"早上|上午|中午|下午|晚上|凌晨|春天|夏天|秋天|冬天|春节|国庆|元旦|中秋|端午|"
    r"(?:\d+|[一二三四五六七八九十]+)(?:年|月|日|号|点|时|分钟|小时|天|周|个月)"
)
_ZH_COMPARATIVE = re.compile(
    r"[更最较越][\u4e00-\u9fff]|比|大于|小于|多于|少于|高于|低于|超过|不到|以上|以下|至少|至多|最多|最少"
)
_ZH_INTENTS = [
    ("reason", re.compile(r"为什么|为何|为啥|怎么会|何故|原因")),
    ("time", re.compile(r"什么时候|何时|几点|哪天|哪一天|哪年|哪一年|哪个月|哪一个月|哪月|多久|多长时间")),
    ("place", re.compile(r"哪里|哪儿|在哪|何处|什么地方|哪个国家|哪个城市")),
    ("person", re.compile(r"谁|哪位|哪(?:个|一个|家)?(?:部门|单位|机构|领导)")),
    ("quantity", re.compile(r"多少|几个|几[个次天年岁种位]|多大|多高|多重|多远|多长")),
]
_ZH_A_NOT_A = re.compile(r"([\u4e00-\u9fff])[不没]\1")
# Nouns that carry no topic of their own ("the way to", "what time", "which city").
_ZH_GENERIC_NOUNS = {"时候", "方法", "办法", "问题", "东西", "时间", "地方", "城市", "国家", "样子", "情况", "原因",
                     "名字", "意思", "建议", "步骤", "方式", "作者", "人"}
_ZH_NOT_TOPIC = set("内外上下中天年月日时前后里边面人家点分度次个号种样事")
# English words that carry no topic of their own: a paraphrase may add or drop them freely.
_EN_FUNCTION = {
    "a", "an", "the", "what", "what's", "whats", "how", "why", "when", "where", "who", "which", "whom", "whose",
    "is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "done", "doing", "can", "could",
    "should", "would", "will", "shall", "may", "might", "must", "have", "has", "had", "i", "i'm", "me", "my",
    "mine", "we", "us", "our", "you", "your", "yours", "he", "she", "it", "it's", "its", "they", "them", "their",
    "this", "that", "these", "those", "there", "here", "please", "tell", "give", "show", "explain", "describe",
    "let", "let's", "in", "on", "at", "for", "from", "to", "with", "by", "of", "about", "into", "onto", "over",
    "if", "and", "or", "but", "so", "as", "than", "then", "also", "just", "any", "some", "all", "each", "every",
    "way", "ways", "step", "steps", "method", "thing", "things", "something", "anything", "one", "ones",
    "get", "got", "make", "made", "use", "using", "need", "want", "know", "help", "able", "allowed", "possible",
    "okay", "ok", "kind", "sort", "type", "really", "actually", "exactly", "right", "now", "currently", "still",
    "it’s", "what’s", "i’m", "vs", "versus", "between", "s", "t", "re", "ll", "ve", "d", "m", "yes", "no", "not",
    "time", "much", "many", "long", "often", "per", "each", "someone", "somebody", "people", "person", "go",
    "going", "say", "said", "called", "mean", "meaning", "like", "look", "looks", "seem", "seems", "lot", "lots",
    "whether", "within", "without", "after", "before", "during", "up", "out", "off", "down", "do", "say",
}
_ZH_ENTITY_FLAGS = {"nr", "nrt", "nrfg", "ns", "nt", "nz", "nx", "eng"}


@dataclass(frozen=True)
class Signature:
    """The meaning-bearing parts of one text that an embedding barely sees."""

    negations: int
    """How many negations (a count, not a parity: "not un-X" is still worth a model call)."""
    numbers: frozenset[str]
    dates: frozenset[str]
    entities: frozenset[str]
    comparatives: frozenset[str]
    opposites: frozenset[str]
    intents: frozenset[str]
    words: frozenset[str] = frozenset()
    """Every word (English stemmed, Chinese as jieba cuts it): where an entity of the other text is looked for."""
    text: str = ""
    content: frozenset[str] = frozenset()
    """Content words (English non-function words, Chinese nouns), for spotting a swapped topic word."""
    orders: frozenset[tuple[str, str]] = frozenset()
    """Directed pairs: "X to Y", "from X to Y", "把X转换成Y"."""


def meaning_differs(a: str, b: str, *, substitution: bool = True) -> str | None:
    """Why ``a`` and ``b`` must not share a cached answer, or None when no difference is seen.

    Returns the name of the first differing part: ``"negation"``, ``"opposite"``, ``"direction"``,
    ``"number"``, ``"date"``, ``"entity"``, ``"comparative"``, ``"intent"`` or ``"substitution"``
    (each text has a content word the other lacks: "symptoms of the flu" / "treatments for the flu";
    checked only with ``substitution=True``, since paraphrases that swap synonyms fail it too).
    """
    sa, sb = signature(a), signature(b)
    if sa.negations != sb.negations:
        return "negation"
    if _opposed(sa.opposites, sb.opposites):
        return "opposite"
    if any((y, x) in sb.orders for x, y in sa.orders if x != y):
        return "direction"
    if sa.numbers != sb.numbers:
        return "number"
    if sa.dates != sb.dates:
        return "date"
    if _unmatched(sa, sb) or _unmatched(sb, sa):
        return "entity"
    # One text may add a comparative or a question word the other leaves implicit ("bigger font" /
    # "increase the font"); two different ones ("faster" / "slower", why / when) differ.
    if not (sa.comparatives <= sb.comparatives or sb.comparatives <= sa.comparatives):
        return "comparative"
    if not (sa.intents <= sb.intents or sb.intents <= sa.intents):
        return "intent"
    if substitution and _swapped(sa, sb) and _swapped(sb, sa):
        return "substitution"
    return None


def _swapped(sa: Signature, sb: Signature) -> bool:
    """``sa`` has a content word that ``sb`` does not contain (Chinese: not even as part of a word)."""
    for word in sa.content - sb.content:
        if has_cjk(word) and (word in sb.text or any(w in word for w in sb.content if len(w) > 1)):
            continue
        return True
    return False


def _unmatched(sa: Signature, sb: Signature) -> bool:
    """An entity of ``sa`` that ``sb`` does not mention at all (in any case or inflection)."""
    for entity in sa.entities - sb.entities:
        if has_cjk(entity):
            if entity in sb.text or any(w in entity for w in sb.entities | sb.content if len(w) > 1):
                continue
        elif _stem(entity) in sb.words:
            continue
        return True
    return False


def _opposed(a: frozenset[str], b: frozenset[str]) -> bool:
    """One text takes one side of an opposite pair and the other text takes the other side."""
    pairs = {side.split(":")[0] for side in a | b}
    for pair in pairs:
        sides_a = {s for s in a if s.split(":")[0] == pair}
        sides_b = {s for s in b if s.split(":")[0] == pair}
        if sides_a and sides_b and sides_a != sides_b:
            return True
    return False


@lru_cache(maxsize=4096)
def signature(text: str) -> Signature:
    """Extract a text's :class:`Signature` (cached: the same cached question is checked often)."""
    text = unicodedata.normalize("NFKC", text)
    parts: dict[str, set] = {name: set() for name in (
        "numbers", "dates", "entities", "comparatives", "opposites", "intents", "words", "content", "orders")}
    _english(text, parts)
    negations = _english_negations(text)
    if has_cjk(text):
        negations += _chinese(text, parts)
    return Signature(negations, text=text.lower(), **{k: frozenset(v) for k, v in parts.items()})


# ---------------------------------------------------------------- English


def _english_negations(text: str) -> int:
    lowered = text.lower().replace("’", "'")
    count = len(re.findall(r"[a-z]n't\b", lowered))
    for word in re.findall(r"[a-z']+", lowered):
        if word.replace("'", "") in _EN_NEG and not word.endswith("n't"):
            count += 1
    return count


_SENTENCE_START = re.compile(r"(?:^|[.!?。！？:;\n]\s*)$")
_OPPOSITE_SIDE = {
    w: f"{i}:{side}" for i, pair in enumerate(_OPPOSITES) for side, words in enumerate(pair) for w in words.split("|")
}


def _stem(word: str) -> str:
    """Crude English inflection stripping, enough to match "renting" with "rent" and "Australia's"
    with "australia" (never "Austria" with "Australia")."""
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    if re.search(r"(?:s|x|z|ch|sh|o)es$", word) and len(word) > 4:
        return word[:-2]
    for suffix, keep in (("ies", 4), ("ing", 5), ("ly", 5), ("ed", 4), ("s", 3)):
        if word.endswith(suffix) and len(word) > keep and not word.endswith("ss"):
            word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    return word.rstrip("'")


_ORDER_EN = re.compile(r"\b(?:from\s+)?(\w+)\s+(?:to|into|->)\s+(\w+)", re.I)
_ORDER_ZH = re.compile(r"把(.+?)(?:转换成|转换为|转成|转为|换成|翻译成|改成)([^，。？?！!]+)")


def _english(text: str, parts: dict[str, set]) -> None:
    numbers, dates, entities = parts["numbers"], parts["dates"], parts["entities"]
    comparatives, opposites, intents = parts["comparatives"], parts["opposites"], parts["intents"]
    words = list(_WORD.finditer(text))
    lowered = [m.group().lower().replace("’", "'") for m in words]
    for low in lowered:
        stem = _stem(low)
        parts["words"].add(stem)
        if stem not in _EN_FUNCTION and low not in _EN_FUNCTION and not stem[:1].isdigit() and len(stem) > 1:
            parts["content"].add(stem)
    for m in _ORDER_EN.finditer(text):
        a, b = _stem(m.group(1)), _stem(m.group(2))
        if a not in _EN_FUNCTION and b not in _EN_FUNCTION:
            parts["orders"].add((a, b))
    for i, m in enumerate(words):
        word, low = m.group(), lowered[i]
        bare = low.rstrip("%")
        if bare[:1].isdigit():
            numbers.add(_number(bare.replace(",", "")) + ("%" if low.endswith("%") else ""))
            continue
        if low in _EN_NUMBERS and not (low == "one" and _pronoun_one(lowered, i)) and low != "second":
            numbers.add(_number(str(_EN_NUMBERS[low])))
        if low in _EN_DATES and (low not in _EN_AMBIGUOUS_DATES or _date_context(lowered, i)
                                 or (word[:1].isupper() and not _SENTENCE_START.search(text[: m.start()]))):
            dates.add(low[:3] if low in _MONTHS_AND_DAYS else low)
        if low in _EN_COMPARATIVES or (i + 1 < len(lowered) and lowered[i + 1] == "than" and len(low) > 3):
            comparatives.add(low)
        if low in _OPPOSITE_SIDE:
            opposites.add(_OPPOSITE_SIDE[low])
        if low in _EN_INTENTS:
            intents.add(_EN_INTENTS[low])
        if low == "how" and i + 1 < len(lowered) and lowered[i + 1] in ("many", "much", "long", "old", "far"):
            intents.add("quantity" if lowered[i + 1] in ("many", "much") else lowered[i + 1])
        if _is_name(word, low, text, m.start()):
            entities.add(_stem(low))


_MONTHS_AND_DAYS = {
    "january", "february", "march", "april", "june", "july", "august", "september", "october",
    "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
    "sunday", "sept",
}


def _pronoun_one(words: list[str], i: int) -> bool:
    """"one" as a pronoun ("which one", "the one", "one of") is not a number."""
    prev = words[i - 1] if i else ""
    nxt = words[i + 1] if i + 1 < len(words) else ""
    return prev in ("which", "the", "this", "that", "any", "every", "each", "no", "some") or nxt == "of"


def _date_context(words: list[str], i: int) -> bool:
    prev = words[i - 1] if i else ""
    nxt = words[i + 1] if i + 1 < len(words) else ""
    unit = {"week", "month", "year", "day", "time", "night", "weekend", "quarter", "season", "semester"}
    if nxt in unit:
        return True
    return words[i] in ("may", "march") and (prev in ("in", "on", "since", "until", "by", "during") or nxt[:1].isdigit())


def _is_name(word: str, low: str, text: str, start: int) -> bool:
    """A capitalised word, an acronym or a mixed-case brand ("iPhone"), but not a sentence's first word
    unless it is not a common word either."""
    if len(word) == 1 and word != "I":
        return word.isupper() and not _SENTENCE_START.search(text[:start])
    if word in ("I", "OK") or not any(c.isupper() for c in word):
        return False
    if word[1:] != word[1:].lower():  # NASA, iPhone, GPT-4, McDonald
        return True
    at_start = bool(_SENTENCE_START.search(text[:start]))
    return not at_start or (low not in _EN_COMMON_INITIAL and low not in _EN_FUNCTION)


def _number(raw: str) -> str:
    try:
        value = float(raw)
    except ValueError:
        return raw
    return str(int(value)) if value == int(value) else repr(value)


# ---------------------------------------------------------------- Chinese


def _chinese(text: str, parts: dict[str, set]) -> int:
    numbers, dates, entities = parts["numbers"], parts["dates"], parts["entities"]
    comparatives, opposites, intents = parts["comparatives"], parts["opposites"], parts["intents"]
    neg_text = _ZH_A_NOT_A.sub(" ", text)  # 放不放假, 有没有: a question, not a negation
    for word in _ZH_NOT_NEG:
        neg_text = neg_text.replace(word, " ")
    negations = len(_ZH_NEG.findall(neg_text))

    num_text = text
    for word in _ZH_NOT_NUMBER:
        num_text = num_text.replace(word, " ")
    for run in _ZH_NUMERAL.findall(num_text):
        value = _zh_number(run)
        if value is not None:
            numbers.add(_number(str(value)))
    # "第一" and "一" mean the same position; digits were read by the English pass.

    spans = [m.group() for m in _ZH_DATES.finditer(text)]
    dates.update(_zh_date(span) for span in spans)
    for m in _ZH_COMPARATIVE.finditer(text):
        comparatives.add(m.group())
    for name, pattern in _ZH_INTENTS:
        if pattern.search(text):
            intents.add(name)
    for word in _OPPOSITE_SIDE:
        if is_cjk(word) and word in text:
            opposites.add(_OPPOSITE_SIDE[word])

    for m in _ORDER_ZH.finditer(text):
        parts["orders"].add((m.group(1).strip().lower(), m.group(2).strip().lower()))
    for word, flag in pos_words(text):
        if not has_cjk(word) or word in _ZH_GENERIC_NOUNS:
            continue
        parts["words"].add(word)
        if len(word) < 2:  # one character: a topic (猫, 水) unless it is a place/time/unit word (上, 内, 天)
            if flag == "n" and word not in _ZH_NOT_TOPIC:
                parts["content"].add(word)
        elif flag in _ZH_ENTITY_FLAGS:
            entities.add(word)
        elif flag.startswith("n"):
            parts["content"].add(word)
    return negations


def _zh_date(word: str) -> str:
    """Read the numerals of a date so 3月 and 三月 are the same date."""
    def repl(m: re.Match) -> str:
        value = _zh_number(m.group())
        return str(value) if value is not None else m.group()
    word = re.sub(r"(星期|礼拜)", "周", word).replace("个", "")
    word = re.sub(r"周天", "周日", word)
    return re.sub(r"[零〇一二两三四五六七八九十百千]+", repl, word)


def _zh_number(run: str) -> int | None:
    """Value of a Chinese numeral run: 三 = 3, 十五 = 15, 两百零五 = 205, 三万 = 30000; 一二三 = 123."""
    if not any(ch in _ZH_UNITS for ch in run):
        digits = [_ZH_DIGITS.get(ch) for ch in run]
        if None in digits:
            return None
        return int("".join(str(d) for d in digits))
    total, section, digit = 0, 0, None
    for ch in run:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        elif ch in ("万", "亿"):
            section = (section + (digit or 0)) or 1
            total = (total + section) * _ZH_UNITS[ch]
            section, digit = 0, None
        else:
            section += (1 if digit is None else digit) * _ZH_UNITS[ch]
            digit = None
    return total + section + (digit or 0)

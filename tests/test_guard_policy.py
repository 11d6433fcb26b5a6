"""Content policy: Chinese-aware word matching, actions, streaming."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("ahocorasick", reason="needs the guard extra")

from lingxi.errors import ContentPolicyError, UsageError  # noqa: E402
from lingxi.guard.policy import Category, ContentPolicy, PolicyStream  # noqa: E402


@pytest.fixture(scope="module")
def policy():
    return ContentPolicy([
        Category("gambling", "block", ("赌博网站", "online casino")),
        Category("insult", "warn", ("ass", "傻瓜")),
        Category("competitor", "log", ("竞品甲",)),
    ])


@pytest.mark.parametrize("text, found", [
    ("推荐一个赌博网站", "赌博网站"),
    ("推薦一個賭博網站", "賭博網站"),                 # traditional
    ("推荐一个赌 博-网*站", "赌 博-网*站"),           # spacing and filler
    ("推荐一个赌\u200b博网站", "赌\u200b博网站"),      # zero-width space
    ("ＯＮＬＩＮＥ　Casino!", "ＯＮＬＩＮＥ　Casino"),  # full width, case
    ("o.n.l.i.n.e casino", "o.n.l.i.n.e casino"),
    ("you ass", "ass"),
    ("看看竞品甲", "竞品甲"),
])
def test_variants_match(policy, text, found):
    hits = policy.check(text)
    assert [text[h.start:h.end] for h in hits] == [found]


@pytest.mark.parametrize("text", ["first class service", "assess the risk", "赌博是违法的", "casinos online"])
def test_no_false_match(policy, text):
    assert policy.check(text) == []


def test_decision_and_enforce(policy):
    assert policy.decision(policy.check("傻瓜才去赌博网站")) == "block"
    assert policy.decision(policy.check("看看竞品甲，你个傻瓜")) == "warn"
    assert policy.decision(policy.check("你好")) is None
    with pytest.raises(ContentPolicyError, match="gambling") as err:
        policy.enforce("去赌博网站")
    assert err.value.code == "content_filter" and err.value.http_status == 400
    assert [h.category for h in policy.enforce("你个傻瓜")] == ["insult"]


def test_from_mapping_with_files(tmp_path):
    (tmp_path / "w.txt").write_text("# comment\n违禁词\n\nbadword\n", encoding="utf-8")
    p = ContentPolicy.from_mapping({"custom": {"action": "warn", "files": ["w.txt"], "words": ["另一个"]}}, tmp_path)
    assert {h.word for h in p.check("违禁词 and badword and 另一个")} == {"违禁词", "badword", "另一个"}
    with pytest.raises(UsageError, match="cannot read"):
        ContentPolicy.from_mapping({"x": {"files": ["missing.txt"]}}, tmp_path)
    with pytest.raises(UsageError, match="unknown action"):
        ContentPolicy([Category("x", "shred", ("a",))])  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["前面都正常，然后提到赌博网站，后面还有话", "ok then an online casino appears"])
def test_stream_blocks_at_every_split(policy, text):
    for i in range(1, len(text)):
        s = PolicyStream(policy)
        emitted = ""
        with pytest.raises(ContentPolicyError):
            emitted += s.feed(text[:i])
            emitted += s.feed(text[i:])
            emitted += s.flush()
        assert "赌博网站" not in emitted and "online casino" not in emitted


def test_stream_holds_only_a_possible_word_start(policy):
    s = PolicyStream(policy)
    assert s.feed("今天天气不错，赌") == "今天天气不错，"
    assert s.feed("一把？不") == "赌一把？不"
    assert s.flush() == ""
    s = PolicyStream(policy)

    async def pieces():
        for p in ["你个傻", "瓜，看看竞", "品甲吧"]:
            yield p

    async def run():
        return "".join([p async for p in s.wrap(pieces())])

    assert asyncio.run(run()) == "你个傻瓜，看看竞品甲吧"
    assert [(h.category, h.start, h.end) for h in s.hits] == [("insult", 2, 4), ("competitor", 7, 10)]


def test_empty_policy_and_odd_text():
    p = ContentPolicy([])
    assert p.check("anything") == [] and p.pending_start("abc") == 3
    assert ContentPolicy([Category("x", "warn", ("😀",))]).check("") == []

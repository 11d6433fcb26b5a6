"""The cache's meaning guard: look-alike questions that must not share an answer, in English and Chinese."""

from __future__ import annotations

import pytest

from lingxi.meaning import _zh_number, meaning_differs, signature


@pytest.mark.parametrize("a, b, reason", [
    ("How do I enable 2FA?", "How do I disable 2FA?", "opposite"),
    ("Should I buy Tesla stock?", "Should I sell Tesla stock?", "opposite"),
    ("Is Python fast?", "Isn't Python fast?", "negation"),
    ("Can I cancel my order?", "I cannot cancel my order?", "negation"),
    ("Convert 3 miles to km", "Convert 5 miles to km", "number"),
    ("Give me three tips for sleep", "Give me five tips for sleep", "number"),
    ("What happened in 1989?", "What happened in 1998?", "number"),
    ("Weather in Paris tomorrow", "Weather in London tomorrow", "entity"),
    ("Is the iPhone waterproof?", "Is the Pixel waterproof?", "entity"),
    ("Weather in Paris tomorrow", "Weather in Paris today", "date"),
    ("Meetings on Monday morning", "Meetings on Friday morning", "date"),
    ("Which is faster, Rust or Go?", "Which is slower, Rust or Go?", "comparative"),
    ("Why did the deploy fail?", "When did the deploy fail?", "intent"),
    ("我不喜欢吃辣", "我喜欢吃辣", "negation"),
    ("我没有收到验证码", "我收到验证码了", "negation"),
    ("别删除这个文件", "删除这个文件", "negation"),
    ("明天北京会下雨吗", "明天上海会下雨吗", "entity"),
    ("马云是谁", "马化腾是谁", "entity"),
    ("北京今天天气怎么样", "北京明天天气怎么样", "date"),
    ("三天内可以退货吗", "七天内可以退货吗", "number"),
    ("如何开启蓝牙", "怎么关闭蓝牙", "opposite"),
    ("苹果和香蕉哪个更贵", "苹果和香蕉哪个更便宜", "comparative"),
    ("为什么会下雨", "什么时候会下雨", "intent"),
])
def test_look_alikes_are_told_apart(a, b, reason):
    assert meaning_differs(a, b) == reason
    assert meaning_differs(b, a) == reason


@pytest.mark.parametrize("a, b", [
    ("How do I reset my password?", "What's the way to reset my password?"),
    ("Convert 3 miles to km", "Convert three miles into km"),
    ("Can you explain what Docker is?", "Explain what Docker is."),
    ("May I ask how photosynthesis works?", "How does photosynthesis work?"),
    ("Which one is better for beginners, Python or Java?", "For beginners, is Python or Java better?"),
    ("这个问题非常难", "这个问题很难"),
    ("三天后", "3天后"),
    ("介绍一下长城的历史", "请介绍长城的历史"),
    ("明天北京会下雨吗", "北京明天下雨吗"),
    ("有没有推荐的Python入门书", "推荐几本Python入门书"),
    ("区别是什么：TCP和UDP", "TCP和UDP有什么不同"),
])
def test_paraphrases_pass(a, b):
    assert meaning_differs(a, b) is None


@pytest.mark.parametrize("text, value", [("三", 3), ("十五", 15), ("二十", 20), ("两百零五", 205), ("三万", 30000),
                                         ("一亿", 10**8), ("一二三", 123)])
def test_chinese_numerals_are_read_as_values(text, value):
    assert _zh_number(text) == value


def test_signature_reads_numbers_the_same_in_digits_and_words():
    assert signature("3 apples").numbers == signature("three apples").numbers == signature("三个苹果").numbers

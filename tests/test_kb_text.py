"""Tokenisation, sentence splitting and structure-aware chunking (Chinese and English)."""

from __future__ import annotations

from lingxi.engines.base import estimate_tokens
from lingxi.knowledge.chunking import chunk_document
from lingxi.text import cjk_ratio, split_sentences, tokenize
from lingxi.knowledge.types import Block, Document


def test_tokenize_segments_chinese_and_stems_english():
    toks = tokenize("北京大学的学生在2018年发表了论文。The cats were Running quickly!")
    assert {"北京", "大学", "北京大学", "学生", "2018", "论文"} <= set(toks)
    assert "的" not in toks and "the" not in toks
    assert {"cat", "run", "quick"} <= set(toks)
    assert tokenize("ＡＢＣ Running") == tokenize("abc running")  # full-width folded


def test_split_sentences_chinese_marks_first_class():
    assert split_sentences("第一句。第二句！第三句？“引号里。”后面；最后") == [
        "第一句。", "第二句！", "第三句？", "“引号里。”", "后面；", "最后"]
    assert split_sentences("One. Two! Three? Pi is 3.14 here") == ["One.", "Two!", "Three?", "Pi is 3.14 here"]
    # an abbreviation's or an initial's full stop ends no sentence (a quote had stopped at "Example & Co.")
    assert split_sentences("They were audited by Example & Co. Certified Public Accountants. Andrew W. Mellon "
                           "and the U.S. Army, e.g. in No. 5. Say No. World War I. Then.") == [
        "They were audited by Example & Co. Certified Public Accountants.",
        "Andrew W. Mellon and the U.S. Army, e.g. in No. 5.", "Say No.", "World War I.", "Then."]


def _doc(blocks):
    return Document("k", "src.md", "Title", blocks)


def test_chunk_ids_follow_sections_and_paragraphs():
    blocks = [Block("intro text", 0), Block("A", 1), Block("para a1", 0), Block("para a2", 0),
              Block("B", 1), Block("B.1", 2), Block("para b1", 0)]
    chunks = chunk_document(_doc(blocks), 7, chunk_tokens=3, overlap=0)
    assert [(c.id, c.text) for c in chunks] == [
        ("7.0.1.0", "intro text"), ("7.1.1.0", "para a1"), ("7.1.2.0", "para a2"), ("7.3.1.0", "para b1")]
    assert chunks[-1].headings == ["B", "B.1"] and chunks[-1].context == "Title > B > B.1"


def test_small_paragraphs_pack_and_ids_stay_stable_when_another_section_changes():
    base = [Block("S1", 1), Block("alpha beta", 0), Block("gamma delta", 0), Block("S2", 1), Block("epsilon", 0)]
    changed = [Block("S1", 1), Block("alpha beta", 0), Block("gamma delta", 0), Block("S2", 1), Block("zeta eta", 0)]
    a = chunk_document(_doc(base), 1, chunk_tokens=64, overlap=8)
    b = chunk_document(_doc(changed), 1, chunk_tokens=64, overlap=8)
    assert a[0].id == b[0].id == "1.1.1.0" and a[0].text == "alpha beta\n\ngamma delta"
    assert a[0].hash == b[0].hash and a[1].hash != b[1].hash and a[1].id == b[1].id


def test_long_chinese_paragraph_splits_on_sentences_within_budget_with_overlap():
    sentences = [f"第{i}句讲的是一个相当长的事情，需要很多字来说明白。" for i in range(40)]
    chunks = chunk_document(_doc([Block("".join(sentences), 0)]), 2, chunk_tokens=64, overlap=30)
    assert len(chunks) > 5
    assert [c.id for c in chunks[:3]] == ["2.0.1.0", "2.0.1.1", "2.0.1.2"]
    for c in chunks:
        assert estimate_tokens(c.text) <= 64
        assert c.text.endswith("。")  # cut on sentence boundaries
    assert chunks[1].text.startswith(chunks[0].text.split("。")[-2].split("。")[-1])  # overlap carried over


def test_sentence_longer_than_budget_is_cut_by_length():
    chunks = chunk_document(_doc([Block("字" * 1000, 0)]), 1, chunk_tokens=100, overlap=0)
    assert all(estimate_tokens(c.text) <= 100 for c in chunks) and "".join(c.text for c in chunks) == "字" * 1000


def test_a_clause_or_a_list_is_not_cut_across_chunks():
    # 第五条 …标准如下： with its items had been cut after （一） when the budget ran out there
    blocks = [Block("第四条 因紧急情况未能事先审批的，应在出差返回后两个工作日内补办审批手续。", 0),
              Block("第五条 员工出差乘坐交通工具的标准如下：", 0),
              Block("（一）部门经理及以上人员可乘坐飞机经济舱；", 0), Block("（二）其他员工乘坐高铁二等座；", 0),
              Block("（三）特殊情况须经总经理批准。", 0), Block("第六条 市内交通费凭票据据实报销。", 0)]
    budget = sum(estimate_tokens(b.text) for b in blocks[:3])  # 第四条, the introduction and （一） fill a chunk
    chunks = chunk_document(_doc(blocks), 1, chunk_tokens=budget, overlap=0)
    assert chunks[0].text == blocks[0].text and chunks[0].id == "1.0.1.0"
    assert chunks[1].id == "1.0.2.0" and chunks[1].text.startswith("第五条") and "（三）" in chunks[1].text
    # a list that begins its chunk, or one too long to move, is cut where the budget says
    lone = chunk_document(_doc(blocks[1:5]), 1, chunk_tokens=sum(estimate_tokens(b.text) for b in blocks[1:3]), overlap=0)
    assert lone[0].text.startswith("第五条") and lone[1].text.startswith("（二）")
    # an article's second paragraph does not begin a chunk without the article's number
    code = [Block("第一百八十条 因不可抗力不能履行民事义务的，不承担民事责任。", 0),
            Block("第一百八十一条 因正当防卫造成损害的，不承担民事责任。", 0),
            Block("正当防卫超过必要的限度，造成不应有的损害的，正当防卫人应当承担适当的民事责任。", 0)]
    article = chunk_document(_doc(code), 1, chunk_tokens=sum(estimate_tokens(b.text) for b in code[1:]), overlap=0)
    assert [c.text for c in article] == [code[0].text, f"{code[1].text}\n\n{code[2].text}"]
    # prose without clauses is packed as before
    prose = [Block("Staff book travel through the portal.", 0), Block("Managers approve trips.", 0),
             Block("Receipts are kept for seven years.", 0)]
    packed = chunk_document(_doc(prose), 1, chunk_tokens=sum(estimate_tokens(b.text) for b in prose[:2]), overlap=0)
    assert [c.text for c in packed] == [f"{prose[0].text}\n\n{prose[1].text}", prose[2].text]


def test_whole_mode_is_one_chunk():
    chunks = chunk_document(_doc([Block("a " * 2000, 0), Block("b", 0)]), 3, whole=True)
    assert len(chunks) == 1 and chunks[0].id == "3.0.1.0"


def test_cjk_ratio():
    assert cjk_ratio("中文 text") > 0.2 and cjk_ratio("english only") == 0.0


def test_importing_the_knowledge_package_stays_light():
    import subprocess
    import sys

    code = ("import sys, lingxi.knowledge, lingxi.cli.kb, lingxi.cli.eval; "
            "heavy = [m for m in ('bm25s', 'jieba', 'hnswlib', 'psycopg', 'pypdfium2', 'docx', 'torch', 'Stemmer') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

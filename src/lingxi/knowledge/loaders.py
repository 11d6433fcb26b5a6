"""Turn files into :class:`Document` objects, keeping title, headings and page numbers.

Formats: .txt, .md/.markdown, .html/.htm, .pdf (PDFium; bookmarks as headings, printed lines joined
back into paragraphs), .docx (python-docx), .jsonl/.csv (one document per record). A folder is
walked recursively (hidden files skipped). Parsers are real libraries (markdown-it, selectolax, pypdfium2, python-docx), imported
only for their format.

A file that cannot be used raises :class:`LoadError` with a one-line reason; the caller reports
it and goes on with the other files. This module never writes anything.
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from lingxi.errors import UsageError, missing_extra
from lingxi.knowledge.tree import BULLET, introduces_list, marker
from lingxi.knowledge.types import Block, Document
from lingxi.records import json_lines
from lingxi.text import is_cjk

TEXT_EXTS = {".txt", ".text", ".rst", ".log"}
MARKDOWN_EXTS = {".md", ".markdown"}
HTML_EXTS = {".html", ".htm", ".xhtml"}
RECORD_EXTS = {".jsonl", ".ndjson", ".csv"}
SUPPORTED = TEXT_EXTS | MARKDOWN_EXTS | HTML_EXTS | RECORD_EXTS | {".pdf", ".docx"}

#: Bumped when a format is read or chunked differently (2: PDF lines joined into paragraphs, a
#: DOCX without headings titled by its first line; 3: a clause (第X条) or a list is not cut
#: across chunks when it fits in one; 4: an HTML table row is one paragraph, and a label ending
#: its section joins the paragraph before it; 5: PDFs read by PDFium, their bookmarks as
#: headings; 6: a PDF's running heads that carry the page number dropped; 7: a PDF's footnotes
#: kept apart from the text, each after the paragraph that marks it; 8: a path or a URL wrapped
#: after one of its dots kept whole; 9: a Markdown ordered item keeps its number, and is a block of
#: its own unless a paragraph ending in a colon introduces its list; a paragraph ending in a
#: footnote's mark is no label): ingest then reads files it would skip as unchanged again,
#: re-embedding only the chunks whose text changed.
READER_VERSION = 9

#: Record fields used as the text / title / id of a JSONL or CSV record, in order of preference.
TEXT_FIELDS = ("text", "content", "body", "passage", "answer")
TITLE_FIELDS = ("title", "name", "question", "heading")
ID_FIELDS = ("_id", "id", "doc_id", "key")


class LoadError(UsageError):
    """A file that cannot be ingested; the message says why in one line."""


def iter_files(paths: list[str | Path]) -> Iterator[tuple[Path, str | None]]:
    """Files to ingest under ``paths`` (recursively), each with an error if it cannot be taken.

    Yields ``(path, None)`` for a supported file, ``(path, reason)`` for a missing path or an
    unsupported file named explicitly. Unsupported files found inside folders are skipped silently.
    """
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            yield p, "no such file or folder"
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if f.is_file() and not any(part.startswith(".") for part in rel.parts) and f.suffix.lower() in SUPPORTED:
                    yield f, None
        elif p.suffix.lower() not in SUPPORTED:
            yield p, f"unsupported file type '{p.suffix or '(none)'}'; supported: {', '.join(sorted(SUPPORTED))}"
        else:
            yield p, None


def load_file(path: Path, *, max_bytes: int) -> list[Document]:
    """Parse one file into documents (one, or one per record for JSONL/CSV).

    Raises:
        LoadError: empty, too large, binary, encrypted or unparsable file.
    """
    size = path.stat().st_size
    if size == 0:
        raise LoadError("empty file")
    if size > max_bytes:
        raise LoadError(
            f"file is {size / 2**20:.0f} MiB, over the limit of {max_bytes / 2**20:.0f} MiB "
            "(knowledge.max_file_mb); split it or raise the limit"
        )
    ext = path.suffix.lower()
    source = str(path)
    if ext == ".pdf":
        docs = [_load_pdf(path, source)]
    elif ext == ".docx":
        docs = [_load_docx(path, source)]
    else:
        text = decode_text(path.read_bytes())
        if ext in MARKDOWN_EXTS:
            docs = [_load_markdown(text, source, path.stem)]
        elif ext in HTML_EXTS:
            docs = [_load_html(text, source, path.stem)]
        elif ext in RECORD_EXTS:
            docs = _load_records(text, source, ext)
        else:
            docs = [_load_text(text, source, path.stem)]
    docs = [d for d in docs if any(b.text.strip() for b in d.blocks)]
    if not docs:
        raise LoadError("no text found in the file")
    return docs


def decode_text(data: bytes) -> str:
    """Decode a text file: UTF-8 (with or without BOM), UTF-16 with BOM, else GB18030.

    Raises:
        LoadError: the bytes look binary (NUL bytes or many control characters).
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    head = data[:65536]
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    if b"\x00" in head or controls > len(head) * 0.01:
        raise LoadError("looks like a binary file, not text")
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise LoadError("not valid UTF-8 or GB18030 text")


def _paragraphs(text: str, page: int | None = None) -> list[Block]:
    parts = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    return [Block(p.strip(), 0, page) for p in parts if p.strip()]


def _load_text(text: str, source: str, stem: str) -> Document:
    blocks = _paragraphs(text)
    return Document(source, source, _first_line(blocks) or stem, blocks, {"type": "text"})


def _first_line(blocks: list[Block]) -> str:
    """The first line of a document without headings, when it is short enough to be its title."""
    first = blocks[0].text.splitlines()[0].strip() if blocks else ""
    return first if len(first) <= 80 else ""


def _load_markdown(text: str, source: str, stem: str) -> Document:
    """Headings become heading blocks, paragraphs plain ones. A bullet list is kept in one block
    with the paragraph before it (its introduction), and so is an ordered list after a paragraph
    ending in a colon. Another ordered list is read as a text file's paragraphs would be: a tight
    one (no blank lines between items) is one block, each item of a loose one a block of its own.
    An ordered item keeps its number ("2. Booking"): a policy's numbered sections are often
    written so ("1. Purpose", "1.1 …", "2. Booking"), and the tree and citations need the number."""
    try:
        from markdown_it import MarkdownIt
    except ImportError as exc:
        raise missing_extra("Markdown loading", "knowledge", exc) from exc
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    blocks: list[Block] = []
    level = 0
    joins = True  # does the top-level list being read join the block before it?
    first_item = False  # no item of the top-level ordered list read yet
    number = ""  # the current ordered item's number ("2. "), until its first paragraph takes it
    starts_item = False
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            level = int(tok.tag[1])
        elif tok.type in ("ordered_list_open", "bullet_list_open") and tok.level == 0:
            joins = tok.type == "bullet_list_open" or bool(
                blocks and blocks[-1].level == 0 and introduces_list(blocks[-1].text))
            first_item = True
        elif tok.type == "list_item_open":
            number = f"{tok.info}{tok.markup} " if tok.info else number  # "1. - a": the outer number
            starts_item = starts_item or tok.level == 1  # until the item's first paragraph
        elif tok.type == "list_item_close":
            number = ""  # an empty item's number is no other paragraph's
        elif tok.type == "inline" and tok.content.strip():
            content = number + tok.content.strip()
            number = ""
            in_item = tokens[i - 1].type == "paragraph_open" and tok.level > 1
            tight = tokens[i - 1].hidden  # markdown-it hides the paragraphs of a tight list
            if level:
                blocks.append(Block(content, level))
                level = 0
            elif in_item and blocks and blocks[-1].level == 0 and (
                    joins or not starts_item or (tight and not first_item)):
                blocks[-1].text += "\n" + content  # keep a list together
            else:
                blocks.append(Block(content, 0))
            if starts_item:
                first_item = starts_item = False
        elif tok.type in ("fence", "code_block") and tok.content.strip():
            blocks.append(Block(tok.content.rstrip(), 0))
    title = next((b.text for b in blocks if b.level == 1), None) or next((b.text for b in blocks if b.level), stem)
    return Document(source, source, title, blocks, {"type": "markdown"})


_HTML_BLOCKS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "td", "th", "dt", "dd",
                "figcaption", "caption"}
_HTML_SKIP = {"script", "style", "noscript", "template", "nav", "footer", "svg", "head"}


def _load_html(text: str, source: str, stem: str) -> Document:
    try:
        from selectolax.lexbor import LexborHTMLParser
    except ImportError as exc:
        raise missing_extra("HTML loading", "knowledge", exc) from exc
    tree = LexborHTMLParser(text)
    title_node = tree.css_first("title")
    title = title_node.text().strip() if title_node else ""
    blocks: list[Block] = []
    loose: list[str] = []

    def flush_loose() -> None:
        joined = re.sub(r"\s+", " ", " ".join(loose)).strip()
        if joined:
            blocks.append(Block(joined, 0))
        loose.clear()

    def walk(node) -> None:  # a block element is taken whole; text between blocks is kept too
        child = node.child
        while child is not None:
            tag = child.tag
            if tag == "-text":
                if child.text_content and child.text_content.strip():
                    loose.append(child.text_content)
            elif tag in _HTML_SKIP or tag == "-comment":
                pass
            elif tag in ("ul", "ol") and (lis := [li for li in child.iter() if li.tag == "li"]):
                flush_loose()  # one block, an item a line, as Markdown lists are kept
                items = [re.sub(r"\s+", " ", li.text(separator=" ")).strip() for li in lis]
                if any(items):
                    blocks.append(Block("\n".join(i for i in items if i), 0))
            elif tag == "tr" and (cells := [c for c in child.iter() if c.tag in ("td", "th")]):
                flush_loose()  # one block a row, its cells joined as DOCX rows are: "27 | 0 | false" alone says nothing
                texts = [re.sub(r"\s+", " ", c.text(separator=" ")).strip() for c in cells]
                if any(texts):
                    blocks.append(Block(" | ".join(t for t in texts if t), 0))
            elif tag in _HTML_BLOCKS:
                flush_loose()
                body = re.sub(r"[ \t\r\f\v]+", " ", child.text(separator=" ")).strip()
                if body:
                    blocks.append(Block(body, int(tag[1]) if re.fullmatch(r"h[1-6]", tag) else 0))
            else:
                if tag in ("div", "section", "article", "br", "tr", "table", "ul", "ol", "main", "header"):
                    flush_loose()
                walk(child)
            child = child.next

    root = tree.body or tree.root
    if root is not None:
        walk(root)
        flush_loose()
    title = title or next((b.text for b in blocks if b.level), stem)
    return Document(source, source, title, blocks, {"type": "html"})


def _load_pdf(path: Path, source: str) -> Document:
    try:
        import pypdfium2 as pdfium
    except ImportError as exc:
        raise missing_extra("PDF loading", "knowledge", exc) from exc
    with _PDFIUM:  # PDFium is not thread-safe
        try:
            pdf = pdfium.PdfDocument(str(path))
        except (pdfium.PdfiumError, OSError) as exc:
            if "password" in str(exc).lower():
                raise LoadError("encrypted PDF (needs a password); decrypt it first") from None
            if "Success" in str(exc):  # PDFium fails without an error code on a PDF with no pages
                raise LoadError("PDF has no pages") from None
            raise LoadError(f"unreadable PDF ({exc})") from None
        try:
            if len(pdf) == 0:
                raise LoadError("PDF has no pages")
            texts = [_page_text(pdf, n) for n in range(len(pdf))]
            outline = _outline(pdf)
            try:
                meta_title = pdf.get_metadata_dict().get("Title") or ""
            except ValueError:  # not text (a lone UTF-16 surrogate): the title page's first line instead
                meta_title = ""
        except LoadError:
            raise
        except Exception as exc:  # PDFium's errors
            raise LoadError(f"unreadable PDF ({type(exc).__name__}: {exc})") from None
        finally:
            pdf.close()
    pages = [_page_lines(text) for text, _ in texts]
    dropped = sum(d for _, d in texts)  # glyphs PDFium gave no text for
    chars = sum(len(line) for lines in pages for line in lines) + dropped
    unmapped = sum(len(_UNMAPPED.findall(line)) for lines in pages for line in lines) + dropped
    if chars and unmapped > 0.3 * chars:
        raise LoadError(f"PDF text is not readable: {unmapped / chars:.0%} of its characters have no Unicode "
                        "mapping in the PDF's fonts; export it again with text, or OCR it")
    pages = [[c for line in lines if (c := _UNMAPPED.sub("", line).strip())] for lines in pages]
    furniture, offsets = _furniture(pages), _page_offsets(pages)
    pages = [_without_numbered_head([line for line in lines if _shape(line) not in furniture], n, offsets)
             for n, lines in enumerate(pages, 1)]
    split = [_footnotes(lines, n) for n, lines in enumerate(pages, 1)]
    titles = {_key(title) for marks in outline.values() for _, title in marks}
    page_blocks = [_page_blocks(body, n, outline, titles) for n, (body, _) in enumerate(split, 1)]
    notes: dict[int, list[Block]] = {}  # id(block) -> the footnotes it marks, placed after it
    for blocks, (_, footnotes) in zip(page_blocks, split, strict=True):
        _attach_footnotes(blocks, footnotes, notes)
    for before, after in zip(page_blocks, page_blocks[1:], strict=False):
        if (before and after and before[-1].level == 0 and after[0].level == 0
                and _continues(before[-1].text, after[0].text)):  # a sentence cut by the page break
            moved = after.pop(0)
            before[-1].text = _joined(before[-1].text, moved.text)
            notes.setdefault(id(before[-1]), []).extend(notes.pop(id(moved), []))
    blocks = [b for blocks in page_blocks for block in blocks for b in (block, *notes.get(id(block), ()))]
    if not any(b.level == 0 for b in blocks):  # bookmarks alone are no text
        raise LoadError("PDF has no extractable text (scanned images need OCR first)")
    title = meta_title.strip() or blocks[0].text.splitlines()[0][:80]  # the title page's first line
    return Document(source, source, title, blocks, {"type": "pdf", "pages": len(pages), "outline": bool(outline)})


_PDFIUM = threading.Lock()


def _page_text(pdf, n: int) -> tuple[str, int]:
    """Page ``n``'s text, and how many of its characters gave none (glyphs its fonts map to no
    Unicode character, which PDFium leaves out)."""
    page = pdf[n]
    textpage = page.get_textpage()
    try:
        text = textpage.get_text_range()
        return text, max(0, textpage.count_chars() - len(text))
    finally:
        textpage.close()
        page.close()


def _outline(pdf) -> dict[int, list[tuple[int, str]]]:
    """The PDF's bookmarks (its outline) by page number: ``(level, title)`` in order, level 1 the
    outermost. A PDF exported from Word, LaTeX or a typesetter carries its headings here, which the
    printed text alone does not tell apart from a short paragraph."""
    by_page: dict[int, list[tuple[int, str]]] = {}
    for mark in pdf.get_toc():
        dest = mark.get_dest()
        try:
            title = " ".join(mark.get_title().split())
        except ValueError:  # a title that is not text (a lone UTF-16 surrogate): no heading
            continue
        index = dest.get_index() if dest is not None else None
        if title and index is not None:
            by_page.setdefault(index + 1, []).append((mark.level + 1, title))
    return by_page


def _key(text: str) -> str:
    """Letters and digits only, lower-cased: a heading as printed ("1.1 Scope", "ABOUT THIS
    MANUAL") against its bookmark's title."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


#: A section number printed before a heading's title: 4.9, A.1, IV, 第三章, Chapter 2, Article 5.
_NUMBERING = re.compile(r"(?:(?i:chapter|section|article|appendix|annex|part)\s+)?"
                        r"(?:\d+(?:\.\d+)*\.?|[A-Z](?:\.\d+)*\.?|[IVXLC]+\.?|第[零〇一二两三四五六七八九十百千\d]+[编章节条])(?=\s)")
#: What a table of contents prints after a title: dot leaders and a page number (arabic or roman).
_TOC_TAIL = re.compile(r"(?:\s*(?:\.\s*){2,}|\s+)(?:\d+|[ivxlc]+)$", re.I)
_NUMBER_WORDS = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
                 "sixteen|seventeen|eighteen|nineteen|twenty")
#: A label printed above a chapter's title: "CHAPTER" and "ONE" on lines of their own, "Appendix B".
_LABEL = re.compile(rf"(?i)(?:chapter|appendix|annex|part)(?:\s+(?:\d+|[ivxlc]+|[a-z]|{_NUMBER_WORDS}))?"
                    rf"|{_NUMBER_WORDS}")
#: Lines a heading may be printed over.
_HEADING_LINES = 3


def _title_keys(line: str) -> set[str]:
    """The keys a printed line may match a bookmark's title by: its own, and its words after a
    section number ("4.9 Main building script" is the bookmark "Main building script")."""
    numbered = _NUMBERING.match(line)
    rest = line[numbered.end():] if numbered and numbered.end() < len(line) else line
    return {_key(line), _key(rest)}


def _page_blocks(lines: list[str], page: int, outline: dict[int, list[tuple[int, str]]],
                 titles: set[str]) -> list[Block]:
    """A page's blocks: its bookmarked headings found among its lines (as printed, so a section
    number stays; a heading may be printed over up to three lines; a bookmark not found in the text
    is put where the one before it was found), the lines between them joined back into paragraphs.
    With an outline, a contents page's entries (three or more lines that are a bookmarked title
    and a page number) are dropped, and so is a "CHAPTER" / "ONE" label above a title."""
    if not outline:
        return [Block(text, 0, page) for text in _reflow(lines)]
    dropped = _contents_entries(lines, titles)
    headings: dict[int, tuple[int, str, int]] = {}  # first line -> (level, text, lines it spans)
    placed: list[tuple[int, int, str]] = []  # (before line index, level, title) for bookmarks not found
    start = 0
    for level, title in outline.get(page, []):
        key = _key(title)
        found = next(((i, n) for i in range(start, len(lines)) if i not in dropped
                      for n in range(1, _HEADING_LINES + 1)
                      if i + n <= len(lines) and key in _title_keys(" ".join(lines[i:i + n]))), None)
        if found is None:
            placed.append((start, level, title))
            continue
        i, n = found
        printed = " ".join(lines[i:i + n])
        headings[i] = (level, title if _key(printed) == key and printed != title else printed, n)
        for j in range(i - 1, start - 1, -1):  # "CHAPTER" / "ONE" printed above the title
            if not _LABEL.fullmatch(lines[j]):
                break
            dropped.add(j)
        start = i + n
    blocks: list[Block] = []
    run: list[str] = []

    def flush() -> None:
        blocks.extend(Block(text, 0, page) for text in _reflow(run))
        run.clear()

    skip = 0
    for i, line in enumerate(lines):
        for before, level, title in placed:
            if before == i:
                flush()
                blocks.append(Block(title, level, page))
        if i in headings:
            flush()
            level, text, skip = headings[i]
            blocks.append(Block(text, level, page))
        if skip:
            skip -= 1
        elif i not in dropped:
            run.append(line)
    flush()
    blocks.extend(Block(title, level, page) for before, level, title in placed if before >= len(lines))
    return blocks


def _contents_entries(lines: list[str], titles: set[str]) -> set[int]:
    """The lines of a contents page: a bookmarked title (after its section number, if any) and a
    page number, or such an entry wrapped over two lines; only where three or more are on the page,
    so a table row such as "Revenue 500" under a bookmark "Revenue" stays."""
    found: set[int] = set()
    for i, line in enumerate(lines):
        tail = _TOC_TAIL.search(line)
        if tail is None:
            continue
        if _title_keys(line[:tail.start()]) & titles:
            found.add(i)
        elif i and _title_keys(lines[i - 1] + " " + line[:tail.start()]) & titles:
            found.update((i - 1, i))
    return found if len(found) >= 3 else set()


#: Sentence ends and clause ends (a footnote's mark "[2]" may follow) after which a PDF line ends
#: its paragraph; a dot leader and a number (a table of contents' "4.3 DER functions . . . . 15", a
#: statement's "Revenue ..... 1,234") end it too.
_LINE_END = re.compile(r"[。！？：；.!?:;][”’」』）)\"']*(?:\[\d+\])?$|(?:\.\s?){4,}\s*[\d,.]+$")
_PAGE_NUMBER = re.compile(r"(?:page\s*)?[-–—]?\s*\d+\s*(?:(?:/|of)\s*\d+)?\s*[-–—]?|第\s*\d+\s*页(?:\s*[，,/]?\s*共\s*\d+\s*页)?",
                          re.I)
#: Typographic ligatures PDFs store as one glyph (ﬁ in "ﬁnance"), which no tokenizer reads as letters.
_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                            "\ufb05": "st", "\ufb06": "st"})
#: The mark PDFium leaves where it joined a word hyphenated across two lines (U+FFFE): dropped
#: ("divi-sion"), but kept as a hyphen before a capital or a digit ("US-ASCII", "UTF-8") and in a
#: word that has a hyphen already ("day-to-day", "--gen-suppressions").
_JOINED_HYPHEN = re.compile("([^\\s\ufffe]*)\ufffe(?=([A-Z0-9])?)")
#: What PDFium gives for a glyph its font maps to no character (U+0000, other controls, U+FFFD).
_UNMAPPED = re.compile("[\x00-\x08\x0b-\x1f\ufffd]")


def _page_lines(text: str) -> list[str]:
    """A PDF page's text lines, ligatures spelt out, blank lines and a lone page number at the
    top or bottom dropped."""
    text = _JOINED_HYPHEN.sub(lambda m: m.group(1) + ("-" if m.group(2) or "-" in m.group(1) else ""), text)
    lines = [line.strip() for line in text.translate(_LIGATURES).replace("\r", "\n").split("\n")]
    lines = [line for line in lines if line]
    while lines and _PAGE_NUMBER.fullmatch(lines[-1]):
        lines.pop()
    while lines and _PAGE_NUMBER.fullmatch(lines[0]):
        lines.pop(0)
    return lines


def _shape(line: str) -> str:
    """A line with its digits masked: a running header or footer keeps its shape from page to page."""
    return re.sub(r"\d+", "#", line)


def _furniture(pages: list[list[str]]) -> set[str]:
    """Shapes of the running headers and footers: the first or last two lines of a page that recur
    on three pages or more, and on a tenth of them (a chapter's running head, "Appendix A: Copying
    Information 31", recurs only on that chapter's pages)."""
    seen = Counter(shape for lines in pages for shape in {_shape(line) for line in lines[:2] + lines[-2:]})
    return {shape for shape, n in seen.items() if n >= max(3, len(pages) / 10)}


#: A page number printed at the start or end of a running head: "42 Chapter 5. Control files",
#: "5.6. List of fields 41" (the number stands alone: "Release 4.6.2.0" has none).
_HEAD_NUMBER = re.compile(r"^(\d+)\s+\S|\S\s+(\d+)$")


def _head_number(line: str) -> int | None:
    """The number standing at the start or end of ``line`` (:data:`_HEAD_NUMBER`), if any."""
    m = _HEAD_NUMBER.search(line)
    return int(m.group(1) or m.group(2)) if m else None


def _page_offsets(pages: list[list[str]]) -> set[int]:
    """Where the pages print their numbers in running heads, as offsets: a page's position minus the
    number it prints (front matter shifts the printed numbers by a constant). An offset counts when
    a number standing at the start or end of one of their first two or last two lines gives it on
    three pages and on a quarter of all pages; a numbered list that happens to start a page or two
    in step with the page numbers does not."""
    seen: Counter[int] = Counter()
    for n, lines in enumerate(pages, 1):
        seen.update({n - number for line in lines[:2] + lines[-2:] if (number := _head_number(line)) is not None})
    return {offset for offset, n in seen.items() if n >= max(3, len(pages) / 4)}


def _without_numbered_head(lines: list[str], page: int, offsets: set[int]) -> list[str]:
    """A page's ``lines`` (its furniture gone) without a first or last line that carries the page's
    printed number (``offsets``: :func:`_page_offsets`). A book's running heads name the chapter or
    section the page is in ("42 Chapter 5. Control files and their fields" on even pages, "5.6. List
    of fields 43" on odd ones), so their shapes recur too rarely for :func:`_furniture`, and a head
    that starts with its page number would open a numbered clause."""

    def head(line: str) -> bool:
        number = _head_number(line)
        return number is not None and page - number in offsets

    if lines and head(lines[0]):
        lines = lines[1:]
    if lines and head(lines[-1]):
        lines = lines[:-1]
    return lines


#: A footnote's first line: its number, then its text (from a letter, a quote or a bracket), or the
#: number alone with the text on the lines after it.
_NOTE = re.compile(r"(\d{1,3})(?:\s+(?=[A-Za-z“\"(\[])|$)")


def _marked(line: str, number: int) -> str | None:
    """``line`` with footnote ``number``'s mark written "[number]", or None when it has none. PDFium
    gives a superscript mark as a plain number: right after a word's lower-case letter ("document2")
    or after a word and its closing punctuation ("maintenance.2", "Guidelines).3"), after a
    sentence's end at the end of a line ("for historical reasons. 12"), or alone on its line. Not a
    mark: "RFC 2119", "SHA1", "AMD64", "libz.so.1", "/lib64", "Fig. 1"."""
    glued = re.search(rf"(?:^|(?<=\s))([^\s/.]*[a-z]|[^\s/.]*[A-Za-z][.,;:)”’\"]{{1,2}}){number}(?=\s|$)", line)
    if glued:
        return f"{line[:glued.end(1)]}[{number}]{line[glued.end():]}"
    ending = re.search(rf"(?<=[a-z]{{4}}[.,;:)])\s+{number}$", line)
    if ending:
        return f"{line[:ending.start()]}[{number}]"
    return f"[{number}]" if line == str(number) else None


def _first_note(lines: list[str], i: int) -> int | None:
    """The number of the footnote line ``i`` may start the footnotes with: a number from 1, then text
    from a capital, a quote or a bracket ("2 The detailed procedure …"; a later note may start "10
    dpkg-shlibdeps …", but a first one so would take "64 bits, so that …" after "AMD64"), or the
    number alone above such text (a lone number is also a mark, a formula's index, a table's cell)."""
    m = _NOTE.match(lines[i])
    if not m or int(m.group(1)) == 0:
        return None
    text = lines[i][m.end():] or (lines[i + 1] if i + 1 < len(lines) else "")
    return int(m.group(1)) if text[:1] and (text[:1].isupper() or text[:1] in "“\"([") else None


def _footnote_start(lines: list[str]) -> int:
    """Where a page's footnotes start (``len(lines)``: none). A page's footnotes are its last lines:
    the first starts with a number the text above it marks ("… maintenance.2"), and the numbered
    lines from there on count up from it ("2 The detailed procedure …", "3 …"). A contents page,
    whose numbered lines all end in page numbers, has none."""
    for i in range(1, len(lines)):
        if (number := _first_note(lines, i)) is None:
            continue
        starts = _note_starts(lines, i, number)
        if (starts and not all(_TOC_TAIL.search(lines[j]) for j in starts)
                and any(_marked(line, number) for line in lines[:i])):
            return _notes_above(lines, i, number)
    return len(lines)


def _note_starts(lines: list[str], i: int, number: int) -> list[int] | None:
    """The lines from ``i`` on that start notes counting up from ``number`` ("10 dpkg-shlibdeps …"
    after a 9 is one), or None when a line out of step would start one too ("5 The …" after a 2): a
    numbered line out of step may only continue a note ("64 bits, so that …")."""
    starts, expected = [], number
    for j in range(i, len(lines)):
        m = _NOTE.match(lines[j])
        if m and int(m.group(1)) == expected:
            starts.append(j)
            expected += 1
        elif _first_note(lines, j) is not None:
            return None
    return starts


#: Lines a footnote above the first one found may span.
_NOTE_LINES = 8


def _notes_above(lines: list[str], start: int, number: int) -> int:
    """The footnotes' start moved up over the notes just above ``start`` that count down from
    ``number`` (1 and 2 above a 3) whose marks were not found (two marks run together, "links,23")."""
    while number > 1:
        above = next((j for j in range(start - 1, max(0, start - _NOTE_LINES) - 1, -1) if _NOTE.match(lines[j])), None)
        if not above or _first_note(lines, above) != number - 1:
            break
        start, number = above, number - 1
    return start


def _footnotes(lines: list[str], page: int) -> tuple[list[str], list[tuple[int, Block]]]:
    """A page's text lines and its footnotes. The footnotes (from :func:`_footnote_start` on) become
    paragraphs labelled "[2] The detailed procedure …", and their marks in the text "[2]" (a mark
    alone on its line joins the line before it). Left in the text, a footnote "17 This can be
    determined …" opened a numbered clause that swallowed the section's next page."""
    foot = _footnote_start(lines)
    body, notes = list(lines[:foot]), []
    for line in lines[foot:]:
        m = _NOTE.match(line)
        if m and (not notes or int(m.group(1)) == notes[-1][0] + 1):
            number, rest = int(m.group(1)), line[m.end():].strip()
            notes.append((number, Block(f"[{number}]" + (f" {rest}" if rest else ""), 0, page)))
        elif notes:
            note = notes[-1][1]
            note.text = f"{note.text} {line}" if note.text.endswith("]") else _joined(note.text, line)
    for number, _ in notes:
        for at in range(len(body) - 1, -1, -1):  # the last line that marks it
            if (marked := _marked(body[at], number)) is None:
                continue
            if body[at] == str(number) and at:
                body[at - 1] += marked
                del body[at]
            else:
                body[at] = marked
            break
    return body, notes


def _attach_footnotes(blocks: list[Block], footnotes: list[tuple[int, Block]], notes: dict[int, list[Block]]) -> None:
    """Each footnote goes after the last paragraph of its page that marks it ("[2]"), or after the
    page's last block when none does (its mark is in a heading)."""
    for number, note in footnotes:
        at = next((b for b in reversed(blocks) if b.level == 0 and f"[{number}]" in b.text), None)
        if at is None and not blocks:
            blocks.append(note)
        else:
            notes.setdefault(id(at if at is not None else blocks[-1]), []).append(note)


#: A path or a URL cut after a dot at a line's end ("/usr/share/doc/package/changelog.", then "gz."
#: on the next line; "https://example.", then "org/repo."): no sentence's end. The line ends in a
#: word with a slash before it, a letter and the dot; the next starts with the rest: up to four
#: lower-case letters and a dot or a slash (an extension, a domain's part; not "e.g.").
_CUT_PATH = re.compile(r"\S*/\S*[A-Za-z]\.$")
_PATH_REST = re.compile(r"(?!e\.g\.|i\.e\.)[a-z]{1,4}[./]\S*")


def _reflow(lines: list[str]) -> list[str]:
    """A PDF page's lines joined back into paragraphs. PDFium gives one line per printed line, so a
    sentence wrapped across lines would otherwise be quoted cut at the line's end, and the
    numbered clauses inside a page would not open tree nodes. A line starts a paragraph when the
    line before it ends a sentence or clause, is short (a heading, a paragraph's last line), or
    when it starts with a numbered marker (第五条, 2.1, （一）) or a bullet; otherwise it continues
    the line before: a hyphen at a word's end is undone, Chinese joins without a space."""
    if not lines:
        return []
    widths = sorted(_display_width(line) for line in lines)
    full = widths[int(0.8 * (len(widths) - 1))]
    out: list[str] = [lines[0]]
    for prev, line in zip(lines, lines[1:], strict=False):
        if _CUT_PATH.search(prev) and _PATH_REST.match(line):  # "…/changelog." + "gz.": one path
            out[-1] += line
        elif (_LINE_END.search(prev) or _display_width(prev) < 0.75 * full or marker(line) is not None
                or BULLET.match(line)):
            out.append(line)
        else:
            out[-1] = _joined(out[-1], line)
    return out


def _joined(text: str, line: str) -> str:
    """``line`` continuing ``text``: a hyphen at a word's end undone, Chinese joined without a space."""
    if re.search(r"[a-z]-$", text) and line[:1].islower():
        return text[:-1] + line
    return text + line if is_cjk(text[-1]) or is_cjk(line[0]) else text + " " + line


def _continues(paragraph: str, first: str) -> bool:
    """The first paragraph of a page continues the last one of the page before: that one ends in
    mid-sentence and this one starts in lower case, or both are Chinese and the one before is
    long (a heading at a page's foot is short). The paragraph keeps the page it starts on."""
    if _LINE_END.search(paragraph) or marker(first) is not None or BULLET.match(first):
        return False
    return first[:1].islower() or (is_cjk(paragraph[-1]) and is_cjk(first[0]) and len(paragraph) > 30)


def _display_width(line: str) -> int:
    return sum(2 if is_cjk(ch) else 1 for ch in line)


def _load_docx(path: Path, source: str) -> Document:
    try:
        import docx
        from docx.opc.exceptions import PackageNotFoundError
    except ImportError as exc:
        raise missing_extra("DOCX loading", "knowledge", exc) from exc
    try:
        d = docx.Document(str(path))
    except (PackageNotFoundError, ValueError, KeyError, OSError) as exc:
        raise LoadError(f"unreadable DOCX ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # zipfile.BadZipFile and lxml errors for corrupt files
        raise LoadError(f"unreadable DOCX ({type(exc).__name__})") from None
    blocks: list[Block] = []
    for para in d.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        m = re.match(r"(?:Heading|标题)\s*(\d)", style)
        level = 1 if style == "Title" else int(m.group(1)) if m else 0
        blocks.append(Block(text, level))
    for table in d.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                blocks.append(Block(" | ".join(dict.fromkeys(cells)), 0))
    core = d.core_properties.title or ""
    title = core.strip() or next((b.text for b in blocks if b.level), "") or _first_line(blocks) or path.stem
    return Document(source, source, title, blocks, {"type": "docx"})


def _record_doc(rec: dict, source: str, n: int) -> Document:
    rid = next((str(rec[f]) for f in ID_FIELDS if rec.get(f) not in (None, "")), str(n))
    title = next((str(rec[f]) for f in TITLE_FIELDS if rec.get(f)), "")
    text = next((str(rec[f]) for f in TEXT_FIELDS if rec.get(f)), "")
    used = {f for f in ID_FIELDS + TITLE_FIELDS + TEXT_FIELDS if f in rec}
    extra = {k: v for k, v in rec.items() if k not in used}
    if not text:  # no known text field: the record itself, one "key: value" line per field
        text = "\n".join(f"{k}: {v}" for k, v in extra.items() if v not in (None, ""))
        extra = {}
    meta = {k: v for k, v in extra.items() if isinstance(v, (str, int, float, bool))}
    meta["type"] = "record"
    return Document(f"{source}#{rid}", source, title or rid, _paragraphs(text), meta)


def _load_records(text: str, source: str, ext: str) -> list[Document]:
    docs: list[Document] = []
    if ext == ".csv":
        csv.field_size_limit(max(csv.field_size_limit(), len(text)))  # one big cell is still a cell
        try:
            for n, row in enumerate(csv.DictReader(io.StringIO(text)), 1):
                docs.append(_record_doc({k: v for k, v in row.items() if k}, source, n))
        except csv.Error as exc:
            raise LoadError(f"unreadable CSV ({exc})") from None
        return _unique(docs, "row")
    for n, rec, problem in json_lines(text.splitlines()):
        if problem:
            raise LoadError(f"line {n} is {problem}")
        docs.append(_record_doc(rec, source, n))
    return _unique(docs, "line")


def _unique(docs: list[Document], unit: str) -> list[Document]:
    """The records, if no two share an id (each is updated and deleted by it)."""
    first: dict[str, int] = {}
    for n, doc in enumerate(docs, 1):
        if doc.key in first:
            rid = doc.key.rsplit("#", 1)[-1]
            raise LoadError(f"records {first[doc.key]} and {n} have the same id '{rid}' (an id field, or a "
                            f"{unit} number where none is given); ids must be unique within a file")
        first[doc.key] = n
    return docs

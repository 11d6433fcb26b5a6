"""Builders for knowledge-base tests: settings with the instant hash embedder, real PDF/DOCX
files written on the fly and a small bilingual folder (the PostgreSQL server for the store
parameter comes from ``tests/store_servers.py``)."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from lingxi.config import parse_config

CONTRACT_MD = """# 采购合同

## 违约责任

乙方逾期交付的，每日按合同总额的千分之一支付违约金。违约金总额不超过合同总额的百分之十。

## 付款方式

甲方应在验收合格后三十日内支付全部货款。
"""

HANDBOOK_TXT = """Employee Handbook

The notice period for resignation is thirty days, given in writing to the line manager.

Annual leave is twenty working days per calendar year. Unused leave expires at the end of March.
"""

HTML_PAGE = """<html><head><title>Server Setup Guide</title><style>p{}</style></head><body>
<nav>menu</nav><h1>Server Setup</h1><p>Install the package with the system package manager.</p>
<h2>Firewall</h2><p>Open port 8443 for the dashboard and close everything else.</p>
<script>var x = 1;</script></body></html>"""

RECORDS_JSONL = (
    '{"_id": "faq-1", "title": "Password reset", "text": "Reset a forgotten password from the login page.", "team": "it"}\n'
    '{"_id": "faq-2", "title": "报销流程", "text": "差旅报销需在出差结束后十五日内提交发票。", "team": "finance"}\n'
)

RECORDS_CSV = "id,title,text\nc1,Parking,Visitors park in lot B behind the main building.\n"


def kb_settings(home: Path, store: str = "sqlite", pg_url: str | None = None, **knowledge: Any):
    data: dict[str, Any] = {
        "home": str(home),
        "default_embedder": "hash",
        "embedders": {"hash": {"engine": "hash", "dim": 512}},
        "models": {"fake": {"engine": "fake"}},
        "default_model": "fake",
        "knowledge": {"store": store, **knowledge},
    }
    if pg_url:
        data["knowledge"]["pg_url"] = pg_url
    return parse_config(data)


def make_pdf(path: Path, pages: list[str], title: str | None = None, password: str | None = None,
             outline: list[tuple[int, str, int]] | None = None, kerned: bool = False) -> Path:
    """A real PDF (Helvetica text, one string per page, one printed line per ``\\n``), optionally
    encrypted with a password, with an ``outline`` of bookmarks ``(level from 1, title, page index)``,
    and with ``kerned`` lines set as LaTeX sets justified text: each word a string of its own, the gap
    between words made by moving the pen, with no space character in the file."""
    objects: list[bytes] = []
    n_pages = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        lines = []
        for j, para in enumerate(text.split("\n")):
            safe = para.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            shown = "[" + " -333 ".join(f"({w})" for w in safe.split(" ")) + "] TJ" if kerned else f"({safe}) Tj"
            lines.append(f"BT /F1 11 Tf 50 {760 - 30 * j} Td {shown} ET")
        stream = "\n".join(lines).encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {5 + 2 * i} 0 R >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    if title or password or outline:
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(str(path)))
        if title:
            writer.add_metadata({"/Title": title})
        parents: dict[int, object] = {}
        for level, mark, page in outline or []:
            parents[level] = writer.add_outline_item(title=mark, page_number=page, parent=parents.get(level - 1))
        if password:
            writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
        with open(path, "wb") as fh:
            writer.write(fh)
    return path


def make_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.core_properties.title = "Travel Policy"
    d.add_heading("Travel Policy", level=1)
    d.add_heading("Flights", level=2)
    d.add_paragraph("Economy class is required for flights shorter than six hours.")
    d.add_heading("Hotels", level=2)
    d.add_paragraph("Hotel costs are refunded up to 150 euros per night.")
    table = d.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Meal allowance"
    table.rows[0].cells[1].text = "40 euros per day"
    d.save(str(path))
    return path


def make_folder(root: Path) -> Path:
    """A bilingual folder covering every loader."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "contract.md").write_text(CONTRACT_MD, encoding="utf-8")
    (root / "handbook.txt").write_text(HANDBOOK_TXT, encoding="utf-8")
    (root / "guide.html").write_text(HTML_PAGE, encoding="utf-8")
    (root / "faq.jsonl").write_text(RECORDS_JSONL, encoding="utf-8")
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "parking.csv").write_text(RECORDS_CSV, encoding="utf-8")
    make_docx(root / "sub" / "travel.docx")
    make_pdf(root / "report.pdf", ["Quarterly Report", "Revenue grew by twelve percent in the third quarter."],
             title="Quarterly Report")
    return root


def crc(text: str) -> int:
    return zlib.crc32(text.encode())

"""Answers with the real bundled models: the README's and docs' knowledge examples give the answers
they show, cross-lingual questions get cited quotes, and the web UI's "missing API key" message clears once a key is entered (headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from lingxi.cli import main
from lingxi.config import parse_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "docs" / "examples" / "kb"


def _shown_answers(markdown: str) -> list[tuple[str, str]]:
    """(question, answer) pairs of ``lingxi kb ask docs "Q"`` lines followed by a ``# answer`` line."""
    pairs = re.findall(r'lingxi kb ask docs "([^"]+)"[^\n]*\n# (.+)', markdown)
    assert pairs, "no kb ask examples with answers found"
    return pairs


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("LINGXI_HOME", str(home))
    mp.delenv("LINGXI_CONFIG", raising=False)

    def run(*args: str) -> tuple[int, str]:
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
            main(list(args))
        return exc.value.code, out.getvalue()
    assert run("kb", "create", "docs")[0] == 0  # as the README does: e5-small is picked for the Chinese text
    assert run("kb", "ingest", "docs", str(EXAMPLES), "--quiet")[0] == 0
    yield run
    mp.undo()


@pytest.mark.parametrize("doc", ["README.md", "docs/knowledge.md"])
def test_documented_answers_are_the_answers(cli, doc):
    for question, shown in _shown_answers((ROOT / doc).read_text(encoding="utf-8")):
        code, out = cli("kb", "ask", "docs", question, "--json")
        answer = json.loads(out)
        assert code == 0 and answer["answer"] == shown, question
        assert answer["supported"] == (answer["mode"] != "unknown")
        assert all(not c["source"].startswith("/") for c in answer["citations"])


def test_cross_lingual_questions_quote_the_source_language(cli):
    code, out = cli("kb", "ask", "docs", "How many days of paid annual leave do employees get?", "--json")
    answer = json.loads(out)
    assert answer["mode"] == "extracted" and "十五天带薪年假" in answer["answer"]
    assert answer["citations"][0]["source"] == "员工手册.md"
    code, out = cli("kb", "ask", "docs", "酒店每晚最多报销多少钱？", "--json")
    answer = json.loads(out)
    assert answer["mode"] == "extracted" and "150 euros per night" in answer["answer"]
    assert answer["citations"][0]["source"] == "handbook.txt"
    # the English handbook's title line is close in meaning to 手册 but answers nothing
    code, out = cli("kb", "ask", "docs", "手册由哪个部门解释？", "--json")
    assert "Employee Handbook" not in json.loads(out)["answer"]


def test_web_ui_key_message_clears_once_a_key_is_entered(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    from gateway_helpers import running

    from lingxi.engines.fake import FakeEngine
    from lingxi.stores.keys import SQLiteKeyStore

    settings = parse_config({
        "home": str(tmp_path / "home"), "default_model": "fake", "default_embedder": "hash",
        "models": {"fake": {"engine": "fake"}}, "embedders": {"hash": {"engine": "hash", "dim": 64}},
        "gateway": {"cache": {"enabled": False}, "access_log": False},
    })
    secret, _ = SQLiteKeyStore(settings.home_dir / "gateway" / "keys.db").create("acme", name="ui")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    with running(settings, engines={"fake": FakeEngine("fake", replies=["hello"])}) as srv, \
            sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=args, headless=True)
        try:
            page = browser.new_page()
            page.goto(srv.url + "/")
            page.wait_for_selector("#status:not([hidden])", timeout=10000)
            assert "missing API key" in page.inner_text("#status")
            page.fill("#input", "hi")
            page.press("#input", "Enter")
            page.wait_for_selector(".msg.error", timeout=10000)
            page.fill("#apikey", secret)  # typed, not yet left: the list reloads as the key is typed
            page.wait_for_selector("#status", state="hidden", timeout=10000)
            page.wait_for_function("document.querySelectorAll('#model option').length > 0")
            assert page.query_selector_all(".msg.error") == []
            page.select_option("#model", "fake")
            page.fill("#input", "hi")
            page.press("#input", "Enter")
            page.wait_for_selector(".msg.assistant[data-done='1']", timeout=15000)
            assert page.inner_text(".msg.assistant .text") == "hello"
        finally:
            browser.close()

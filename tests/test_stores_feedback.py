"""One suite for both feedback stores: SQLite (embedded) and PostgreSQL (a real server)."""

from __future__ import annotations

import pytest
from store_servers import pg_schema_url

from lingxi.config import parse_config
from lingxi.errors import UsageError
from lingxi.stores.feedback import PostgresFeedbackStore, SQLiteFeedbackStore, open_feedback_store


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path, tmp_path_factory):
    s = (SQLiteFeedbackStore(tmp_path / "feedback.db") if request.param == "sqlite"
         else PostgresFeedbackStore(pg_schema_url(tmp_path_factory)))
    yield s
    s.close()


def test_judgements_come_back_in_order_with_their_conversation(store):
    conversation = [{"role": "user", "content": "违约金是多少？"}]
    first = store.add(response_id="chatcmpl-1", model="smollm2", rating=1, tenant="acme", comment="好",
                      messages=conversation, answer="合同金额的百分之五")
    second = store.add(response_id="chatcmpl-2", model="cloud", rating=-1)
    assert second > first
    rows = store.rows()
    assert [r["response_id"] for r in rows] == ["chatcmpl-1", "chatcmpl-2"]
    assert {k: rows[0][k] for k in ("id", "model", "tenant", "rating", "comment", "messages", "answer")} == {
        "id": first, "model": "smollm2", "tenant": "acme", "rating": 1, "comment": "好",
        "messages": conversation, "answer": "合同金额的百分之五"}
    assert rows[1]["messages"] == [] and rows[1]["rating"] == -1 and rows[0]["created"] <= rows[1]["created"]
    assert [r["id"] for r in store.rows(model="cloud")] == [second]


def test_a_rating_other_than_up_or_down_is_refused(store):
    with pytest.raises(UsageError, match="rating must be 1 or -1"):
        store.add(response_id="x", model="m", rating=5)
    assert store.rows() == []


@pytest.mark.slow  # starts PostgreSQL
def test_the_configured_state_picks_the_backend(tmp_path, tmp_path_factory):
    local = open_feedback_store(parse_config({"home": str(tmp_path)}))
    assert isinstance(local, SQLiteFeedbackStore) and local.path == tmp_path / "gateway" / "feedback.db"
    local.close()
    shared = open_feedback_store(parse_config({"home": str(tmp_path), "gateway": {
        "state": "postgres", "pg_url": pg_schema_url(tmp_path_factory)}}))
    assert isinstance(shared, PostgresFeedbackStore)
    shared.close()

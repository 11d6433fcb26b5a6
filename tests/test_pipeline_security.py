"""Security gaps found in review (issue 11, point 5): what /v1/models shows a key, token limits
under concurrency, and key management over HTTP for operators only."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from gateway_helpers import SlowEngine, gateway_settings, running

from lingxi.engines.fake import FakeEngine
from lingxi.stores.keys import Limits, SQLiteKeyStore

MSG = [{"role": "user", "content": "hi"}]


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_models_lists_only_the_knowledge_bases_a_key_may_read(tmp_path):
    import lingxi.knowledge as knowledge

    settings = gateway_settings(tmp_path / "home")
    for name, groups in (("handbook", None), ("secret", ["legal"])):
        docs = tmp_path / name
        docs.mkdir()
        (docs / f"{name}.md").write_text(f"# {name}\n\nSome text about {name}.\n", encoding="utf-8")
        knowledge.create_kb(name, settings, embedder="hash").ingest([str(docs)], groups=groups, progress=False)
    knowledge.create_kb("empty", settings, embedder="hash")
    store = SQLiteKeyStore(settings.home_dir / "gateway" / "keys.db")
    lawyer, _ = store.create("acme", groups=["legal"])
    clerk, _ = store.create("acme", groups=["hr"])
    nobody, _ = store.create("acme")
    operator, _ = store.create("ops", groups=["*"])
    with running(settings, engines={"fake": FakeEngine("fake")}) as srv:
        def kbs(key: str) -> list[str]:
            data = httpx.get(srv.url + "/v1/models", headers=auth(key)).json()["data"]
            return sorted(m["id"] for m in data if m["id"].startswith("kb:"))

        assert kbs(lawyer) == ["kb:handbook", "kb:secret"]
        assert kbs(clerk) == kbs(nobody) == ["kb:handbook"]  # all of secret's documents are legal-only
        assert kbs(operator) == ["kb:empty", "kb:handbook", "kb:secret"]
        assert httpx.get(srv.url + "/v1/models/kb:secret", headers=auth(clerk)).status_code == 404
        assert httpx.get(srv.url + "/v1/models/kb:secret", headers=auth(lawyer)).status_code == 200
        # the unknown-model error lists the kb: models too, but only those the key may read
        r = httpx.post(srv.url + "/v1/chat/completions", headers=auth(clerk), json={"model": "nope", "messages": MSG})
        assert r.status_code == 404
        message = r.json()["error"]["message"]
        assert "kb:handbook" in message and "kb:secret" not in message and "fake" in message


def test_concurrent_requests_cannot_overrun_a_token_limit(tmp_path):
    # Tokens used to be counted only when a request finished, so each concurrent request could
    # overrun the limit by a whole generation. Now max_tokens (+ the prompt) is reserved first.
    settings = gateway_settings(tmp_path)
    store = SQLiteKeyStore(settings.home_dir / "gateway" / "keys.db")
    key, _ = store.create("acme", limits=Limits(tpm=300))
    slow = SlowEngine("fake", tokens=15, delay_s=0.03)
    with running(settings, engines={"fake": slow}) as srv:
        url = srv.url + "/v1/chat/completions"
        body = {"model": "fake", "messages": MSG, "max_tokens": 200}
        first: list[httpx.Response] = []
        t = threading.Thread(target=lambda: first.append(httpx.post(url, json=body, headers=auth(key), timeout=30)))
        t.start()
        time.sleep(0.15)  # the first is generating, with its 200 tokens reserved
        second = httpx.post(url, json=body, headers=auth(key))
        t.join()
        assert first[0].status_code == 200 and first[0].json()["usage"]["completion_tokens"] == 15
        assert second.status_code == 429 and second.json()["error"]["type"] == "rate_limit_error"
        assert "retry-after" in second.headers
        # the first settled at what it used (18 tokens), so the rest of the minute is usable
        third = httpx.post(url, json=body, headers=auth(key))
        assert third.status_code == 200


def test_keys_are_managed_over_http_by_operators_only(tmp_path):
    settings = gateway_settings(tmp_path)
    store = SQLiteKeyStore(settings.home_dir / "gateway" / "keys.db")
    operator, _ = store.create("ops", groups=["*"])
    user, user_key = store.create("acme", groups=["legal"])
    with running(settings, engines={"fake": FakeEngine("fake")}) as srv:
        base = srv.url + "/admin/keys"
        # a key that is not an operator's gets a 403 everywhere, before its body is read
        for method, path, body in (("POST", "", {"tenant": "x"}), ("GET", "", None),
                                   ("DELETE", f"/{user_key.id}", None), ("POST", f"/{user_key.id}/rotate", None)):
            r = httpx.request(method, base + path, json=body, headers=auth(user))
            assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
        assert httpx.get(base).status_code == 401

        made = httpx.post(base, headers=auth(operator),
                          json={"tenant": "globex", "name": "ci", "groups": ["hr"], "tpm": 1000}).json()
        secret = made["secret"]
        assert made["tenant"] == "globex" and made["groups"] == ["hr"] and made["limits"]["tpm"] == 1000
        assert httpx.get(srv.url + "/v1/models", headers=auth(secret)).status_code == 200
        listed = httpx.get(base, headers=auth(operator)).json()["data"]
        assert made["id"] in [k["id"] for k in listed]
        assert all("secret" not in k for k in listed) and secret not in httpx.get(base, headers=auth(operator)).text

        rotated = httpx.post(f"{base}/{made['id']}/rotate", headers=auth(operator)).json()
        assert rotated["id"] == made["id"] and rotated["secret"] != secret
        assert httpx.get(srv.url + "/v1/models", headers=auth(secret)).status_code == 401
        assert httpx.get(srv.url + "/v1/models", headers=auth(rotated["secret"])).status_code == 200

        revoked = httpx.delete(f"{base}/{made['id']}", headers=auth(operator)).json()
        assert revoked["revoked"] is True and "secret" not in revoked
        assert httpx.get(srv.url + "/v1/models", headers=auth(rotated["secret"])).status_code == 401
        assert made["id"] not in [k["id"] for k in httpx.get(base, headers=auth(operator)).json()["data"]]
        assert made["id"] in [k["id"] for k in httpx.get(base + "?include_revoked=true",
                                                          headers=auth(operator)).json()["data"]]

        missing = httpx.delete(f"{base}/key_nope", headers=auth(operator))
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        bad = httpx.post(base, headers=auth(operator), json={"tenant": "", "rpm": 0})
        assert bad.status_code == 400 and "tenant" in bad.json()["error"]["message"] and "rpm" in bad.text


def test_the_local_user_of_an_open_gateway_can_create_the_first_key(tmp_path):
    with running(gateway_settings(tmp_path), engines={"fake": FakeEngine("fake")}) as srv:
        made = httpx.post(srv.url + "/admin/keys", json={"tenant": "ops", "groups": ["*"]})
        assert made.status_code == 200
        # from now on the gateway needs a key, and the new one is an operator's
        assert httpx.get(srv.url + "/admin/keys").status_code == 401
        assert httpx.get(srv.url + "/admin/keys", headers=auth(made.json()["secret"])).status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_an_open_gateway_refuses_cross_site_simple_posts_to_admin_keys(tmp_path, content_type):
    with running(gateway_settings(tmp_path), engines={"fake": FakeEngine("fake")}) as srv:
        r = httpx.post(srv.url + "/admin/keys", content=b'{"tenant": "evil", "groups": ["*"]}',
                       headers={"content-type": content_type})
        assert r.status_code == 415
        assert httpx.get(srv.url + "/admin/keys").json()["data"] == []

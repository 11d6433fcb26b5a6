"""``lingxi serve`` (subprocesses, as a user runs it) and ``lingxi keys`` (in this process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from conftest import invoke_lingxi, run_lingxi


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "lingxi.toml"
    path.write_text(
        f'home = "{tmp_path / "home"}"\ndefault_model = "fake"\n'
        '[models.fake]\nengine = "fake"\n[gateway]\naccess_log = false\n[gateway.cache]\nenabled = false\n',
        encoding="utf-8")
    return path


def test_keys_create_list_revoke(config):
    made = invoke_lingxi("keys", "create", "--tenant", "acme", "--name", "ci", "--rpm", "5", "--groups", "legal,hr",
                      "--json", config=config)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["secret"].startswith("lx-") and key["tenant"] == "acme" and key["limits"]["rpm"] == 5
    listed = invoke_lingxi("keys", "list", "--json", config=config)
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == [key["id"]] and key["secret"] not in listed.stdout
    assert rows[0]["groups"] == ["legal", "hr"]
    human = invoke_lingxi("keys", "list", config=config)
    assert key["id"] in human.stdout and "tenant=acme" in human.stdout and "rpm=5" in human.stdout
    gone = invoke_lingxi("keys", "revoke", key["id"], config=config)
    assert gone.returncode == 0 and "revoked" in gone.stdout
    assert json.loads(invoke_lingxi("keys", "list", "--json", config=config).stdout) == []
    bad = invoke_lingxi("keys", "revoke", "key_nope", config=config)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: no API key with id 'key_nope'"
    bad = invoke_lingxi("keys", "create", "--tenant", "acme", "--rpm", "0", config=config)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_serve_prints_the_url_and_answers(config):
    env = {k: v for k, v in os.environ.items() if k != "LINGXI_CONFIG"}
    proc = subprocess.Popen([sys.executable, "-m", "lingxi", "serve", "--port", "0", "--config", str(config)],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Lingxi gateway: http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[2]
        deadline = time.time() + 20
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.ConnectError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        r = httpx.post(url + "/v1/chat/completions", json={"model": "fake", "messages": [{"role": "user", "content": "ping"}]})
        assert r.json()["choices"][0]["message"]["content"] == "ping"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)


def test_serve_refuses_the_network_without_keys_and_a_busy_port(config):
    r = run_lingxi("serve", "--host", "0.0.0.0", "--port", "0", config=config)
    assert r.returncode == 2
    assert r.stderr.startswith("error: refusing to listen on 0.0.0.0: no API keys are configured")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        r = run_lingxi("serve", "--port", str(s.getsockname()[1]), config=config)
    assert r.returncode == 2 and r.stderr.startswith("error: cannot listen on 127.0.0.1:")

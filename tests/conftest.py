"""Shared test setup: an isolated LINGXI_HOME, no stray config, server-backed store parameters in the
slow tier, GPU tests only with CUDA."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("lingxi-home")
    saved = {k: os.environ.get(k) for k in ("LINGXI_HOME", "LINGXI_CONFIG")}
    os.environ["LINGXI_HOME"] = str(home)
    os.environ.pop("LINGXI_CONFIG", None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


#: Backends that need a server started for the session. A two-backend suite runs its embedded half
#: in the fast tier and this half with ``-m slow`` (``make test`` runs both).
SERVER_BACKENDS = frozenset({"postgres", "redis", "falkordb"})


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(item, "callspec", None)
        if params is not None and SERVER_BACKENDS.intersection(v for v in params.params.values() if isinstance(v, str)):
            item.add_marker(pytest.mark.slow)
    if any(item.get_closest_marker("gpu") for item in items) and not _has_cuda():
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(skip)


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def run_lingxi(*args: str, config: Path | None = None, stdin: str | None = None, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    if config is not None:
        full_env["LINGXI_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "lingxi", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def invoke_lingxi(*args: str, config: Path | None = None, stdin: str | None = None,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in this process: what :func:`run_lingxi` returns, without a Python start-up
    per call. Each call starts with an empty engine cache, as a new process would."""
    from click.testing import CliRunner

    import lingxi.engines
    from lingxi.cli import main

    lingxi.engines._cache.clear()
    env = dict(env or {})
    if config is not None:
        env["LINGXI_CONFIG"] = str(config)
    with CliRunner().isolation(input=stdin, env=env) as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        return subprocess.CompletedProcess(["lingxi", *args], code, out.getvalue().decode(), err.getvalue().decode())


@pytest.fixture
def fake_config(tmp_path: Path) -> Path:
    """A config whose default chat model is the queued-reply fake and default embedder the hash one."""
    path = tmp_path / "lingxi.toml"
    path.write_text(
        'default_model = "fake"\ndefault_embedder = "hash"\n'
        '[models.fake]\nengine = "fake"\nreplies = ["Paris is the capital of France."]\ncontext_length = 64\n'
        '[embedders.hash]\nengine = "hash"\ndim = 64\n',
        encoding="utf-8",
    )
    return path

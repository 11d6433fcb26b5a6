"""Helpers for the gateway tests: settings for a throwaway home, a real server on a loopback port,
and a slow engine for queue and disconnect tests (a fake: it sleeps instead of computing)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lingxi.config import parse_config
from lingxi.engines.base import (
    ChatEngine,
    Chunk,
    GenerationParams,
    ModelInfo,
    Prompt,
    Usage,
)


def gateway_settings(home: Path, **gateway: Any) -> Any:
    """Fake chat model, hash embedder, cache off unless asked; extra keys go to [gateway]."""
    data: dict[str, Any] = {
        "home": str(home),
        "default_model": "fake",
        "default_embedder": "hash",
        "models": {"fake": {"engine": "fake"}, "fake2": {"engine": "fake"}},
        "embedders": {"hash": {"engine": "hash", "dim": 32}},
        "gateway": {"cache": {"enabled": False}, "access_log": False, "health_interval_s": 0, **gateway},
    }
    return parse_config(data)


@contextmanager
def running(settings: Any, **options: Any) -> Iterator[Any]:
    """A real uvicorn server for ``settings`` on a free loopback port; yields the ServerThread."""
    from lingxi.gateway.app import create_app
    from lingxi.gateway.server import ServerThread

    app = create_app(settings, **options)
    with ServerThread(app) as server:
        server.gateway = app.state.gateway
        yield server


class SlowEngine(ChatEngine):
    """Emits ``tokens`` words, ``delay_s`` apart, and records how many it produced; with a
    ``gate``, it holds after the first word until the gate is set (a request that is surely still
    running, however loaded the machine)."""

    engine_name = "slow"

    def __init__(self, name: str = "slow", tokens: int = 200, delay_s: float = 0.02,
                 gate: threading.Event | None = None):
        super().__init__(name)
        self.tokens, self.delay_s, self.gate = tokens, delay_s, gate
        self.produced = 0
        self.finished = threading.Event()

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, engine=self.engine_name, context_length=4096)

    def stream(self, prompt: Prompt, params: GenerationParams | None = None) -> Iterator[Chunk]:
        try:
            for i in range(self.tokens):
                time.sleep(self.delay_s)
                self.produced += 1
                yield Chunk(text=f"w{i} ")
                if i == 0 and self.gate is not None:
                    self.gate.wait(30)
            yield Chunk(finish_reason="stop", usage=Usage(3, self.tokens))
        finally:
            self.finished.set()

"""Engines a third-party package registers through an entry point: configured, validated, built."""

from __future__ import annotations

import textwrap

import pytest

from lingxi.config import parse_config
from lingxi.engines import backends, create_embedder, load_engine
from lingxi.engines.registry import CHAT, EMBED
from lingxi.errors import ConfigError

PLUGIN = '''
from pydantic import Field

from lingxi.config import ChatModelOptions, EmbedderOptions
from lingxi.engines.base import ChatEngine, Chunk, Embedder, ModelInfo, Usage
import numpy as np


class ShoutOptions(ChatModelOptions):
    greeting: str
    """Said before every answer."""
    times: int = Field(default=1, ge=1, le=3)


class ShoutEngine(ChatEngine):
    engine_name = "shout"
    options_model = ShoutOptions

    def __init__(self, name, config):
        super().__init__(name)
        self.config = config

    @property
    def info(self):
        return ModelInfo(name=self.name, engine=self.engine_name, context_length=128)

    def stream(self, prompt, params=None):
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        yield Chunk(text=" ".join([self.config.greeting] * self.config.times) + " " + text.upper())
        yield Chunk(text="", finish_reason="stop", usage=Usage(1, 1))


class OnesOptions(EmbedderOptions):
    dim: int = 3


class OnesEmbedder(Embedder):
    engine_name = "ones"
    options_model = OnesOptions

    def __init__(self, name, config):
        super().__init__(name)
        self._dim = config.dim

    @property
    def dim(self):
        return self._dim

    def embed(self, texts, *, kind="passage"):
        return np.ones((len(texts), self._dim), dtype=np.float32) / np.sqrt(self._dim)


class NoOptionsEngine(ShoutEngine):
    options_model = None
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Install a package the way pip leaves one: a module plus a dist-info with entry points."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "lingxi_shout.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    info = site / "lingxi_shout-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lingxi-shout\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        "[lingxi.engines]\nshout = lingxi_shout:ShoutEngine\nbare = lingxi_shout:NoOptionsEngine\n"
        "broken = lingxi_shout_missing:Engine\nfake = lingxi_shout:ShoutEngine\n\n"
        "[lingxi.embedders]\nones = lingxi_shout:OnesEmbedder\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(site))
    yield
    import sys

    sys.modules.pop("lingxi_shout", None)


def test_a_plugin_engine_is_configured_validated_and_built(plugin):
    settings = parse_config({
        "default_model": "loud",
        "models": {"loud": {"engine": "shout", "greeting": "HEY", "times": 2, "description": "a plugin"}},
        "embedders": {"flat": {"engine": "ones", "dim": 4}},
    })
    cfg = settings.model("loud")
    assert type(cfg).__name__ == "ShoutOptions" and cfg.greeting == "HEY" and cfg.description == "a plugin"
    assert settings.model_dump()["models"]["loud"]["greeting"] == "HEY"  # the plugin's fields survive a dump
    engine = load_engine("loud", settings)
    assert engine.generate([{"role": "user", "content": "hi"}]).text == "HEY HEY HI"
    assert create_embedder("flat", settings.embedder("flat")).embed(["a", "b"]).shape == (2, 4)


def test_plugin_options_are_checked_with_every_other_problem(plugin):
    with pytest.raises(ConfigError) as err:
        parse_config({
            "default_model": "nope",
            "models": {"loud": {"engine": "shout", "times": 9, "volume": 11},
                       "bare": {"engine": "bare"}, "gone": {"engine": "broken"}},
            "embedders": {"flat": {"engine": "ones", "dim": "four"}},
            "gateway": {"port": -1},
        })
    problems = err.value.problems
    assert "models.loud.greeting: required" in problems
    assert any(p.startswith("models.loud.times: Input should be less than or equal to 3") for p in problems)
    assert "models.loud.volume: unknown key" in problems
    assert any(p.startswith("models.bare.engine: engine 'bare'") and "options_model" in p for p in problems)
    assert any(p.startswith("models.gone.engine: engine 'broken' could not be loaded: ModuleNotFoundError")
               for p in problems)
    assert any(p.startswith("embedders.flat.dim:") for p in problems)
    assert any(p.startswith("gateway.port:") for p in problems)
    assert any(p.startswith("default_model: unknown model 'nope'") for p in problems)
    assert len(problems) == 8


def test_unknown_engine_lists_installed_plugins_and_built_ins_cannot_be_replaced(plugin):
    with pytest.raises(ConfigError) as err:
        parse_config({"models": {"x": {"engine": "whisper"}}})
    assert "expected one of llamacpp, transformers, openai, vllm, fake, shout" in str(err.value)
    assert backends("chat")["fake"] is CHAT["fake"]  # a plugin named "fake" does not take over
    assert parse_config({"models": {"f": {"engine": "fake", "replies": ["x"]}}}).model("f").replies == ["x"]
    assert "ones" in backends("embed") and set(EMBED) <= set(backends("embed"))


def test_every_built_in_backend_resolves_to_its_options_and_class():
    from lingxi.engines import ChatEngine, Embedder

    for registry, options_base, base in ((CHAT, "ChatModelOptions", ChatEngine), (EMBED, "EmbedderOptions", Embedder)):
        for name, backend in registry.items():
            model = backend.options_model()
            assert options_base in [c.__name__ for c in model.__mro__]
            assert model.model_fields["engine"].annotation.__args__ == (name,)
            assert issubclass(backend.load_class(), base)

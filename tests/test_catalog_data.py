"""Every shipped catalog file loads, and every figure in it is backed by a source."""

from __future__ import annotations

import re
import tomllib

import pytest

from lingxi.catalog import load_catalog, missing_sources
from lingxi.catalog.registry import shipped_files
from lingxi.catalog.schema import BENCHMARKS
from lingxi.config import parse_config
from lingxi.errors import ConfigError, ModelNotFoundError

SOURCE = re.compile(r"^(https?://\S+|arXiv:\d{4}\.\d{4,5})$")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_every_shipped_file_is_valid_toml_and_loads(catalog):
    files = shipped_files()
    assert {"gpus.toml", "scenarios.toml"} <= set(files)
    assert sum(name.startswith("models/") for name in files) >= 5
    rows = 0
    for name, text in files.items():
        data = tomllib.loads(text)
        rows += len(data.get("models", [])) + len(data.get("gpus", [])) + len(data.get("scenarios", []))
    assert rows == len(catalog.models) + len(catalog.gpus) + len(catalog.scenarios)


def test_catalog_covers_the_families_the_issue_names(catalog):
    assert len(catalog.models) >= 40
    families = {m.family for m in catalog.models.values()}
    for family in ("llama-2", "llama-3", "llama-3.1", "llama-3.2", "llama-3.3", "code-llama", "chinese-llama-alpaca-2",
                   "qwen2.5", "qwen3", "deepseek-v3", "deepseek-r1", "deepseek-r1-distill", "chatglm3", "glm-4",
                   "baichuan2", "internlm2.5", "yi-1.5", "mistral", "mixtral", "gemma-2", "gemma-3", "phi-3", "phi-4",
                   "bloomz", "falcon", "minicpm", "smollm2", "llava", "gpt-4o", "claude-3", "claude-4",
                   "gemini-1.5", "gemini-2.5", "qwen-api", "ernie-api", "hunyuan-api", "doubao-api", "kimi-api",
                   "deepseek-api"):
        assert family in families, family
    moe = [m for m in catalog.models.values() if m.arch and m.arch.experts]
    assert any(m.family == "qwen3" for m in moe) and any(not m.open_weights for m in catalog.models.values())


def test_every_non_null_figure_has_a_source(catalog):
    problems = [p for m in catalog.models.values() for p in missing_sources(m)]
    assert problems == []
    for m in catalog.models.values():
        for url in filter(None, (m.card, m.license_url, m.arch.source if m.arch else None,
                                 m.price.source if m.price else None)):
            assert SOURCE.match(url), (m.id, url)
        assert set(m.benchmarks) <= set(BENCHMARKS)
        for score in m.benchmarks.values():
            assert SOURCE.match(score.source)
        if m.price:
            assert m.price.as_of and m.price.source
    for g in catalog.gpus.values():
        assert g.source and SOURCE.match(g.source), g.id
        assert (g.price_usd is None) == (g.price_source is None), g.id


def test_missing_sources_catches_an_unbacked_figure(catalog):
    entry = catalog.model("qwen2.5-7b-instruct")
    stripped = entry.model_copy(update={"card": None, "arch": entry.arch.model_copy(update={"source": None})})
    problems = missing_sources(stripped)
    assert any(".params_b" in p for p in problems) and any(".arch" in p for p in problems)


def test_architecture_agrees_with_the_published_parameter_count(catalog):
    # A typo in a layer count or width shows up as a parameter count that disagrees with the card.
    checked = 0
    for m in catalog.models.values():
        if m.arch is None or m.params_b is None or "image" in m.modalities:
            continue
        implied = m.arch.dense_parameters()
        if implied is None:
            continue
        checked += 1
        assert implied / 1e9 == pytest.approx(m.params_b, rel=0.04), m.id
    assert checked >= 35


def test_moe_and_gqa_fields_are_consistent(catalog):
    for m in catalog.models.values():
        a = m.arch
        if a is None:
            continue
        if a.kv_heads and a.attention_heads:
            assert a.attention_heads % a.kv_heads == 0, m.id
        if a.experts:
            assert a.experts_per_token and a.experts_per_token <= a.experts, m.id
            assert m.active_params_b and m.active_params_b < m.params_b, m.id


def test_unknown_values_are_null_not_guessed(catalog):
    # The closed APIs whose vendors publish neither size nor (here) a verified price stay unknown.
    for mid in ("ernie-api", "hunyuan-api"):
        m = catalog.model(mid)
        assert m.params_b is None and m.arch is None and m.price is None
    assert catalog.gpu("ascend-910b").bandwidth_gbs is None


def test_lookup_by_alias_and_close_names(catalog):
    assert catalog.model("smollm2").id == "smollm2-135m-instruct"
    assert catalog.model("Qwen2.5-7B").id == "qwen2.5-7b-instruct"
    with pytest.raises(ModelNotFoundError) as err:
        catalog.model("llama-2-7b")
    assert "llama-2-7b-chat" in str(err.value) and err.value.exit_code == 2
    assert catalog.gpu("4090").id == "rtx-4090"


def test_user_additions_from_config_are_validated_and_win():
    settings = parse_config({"catalog": {
        "models": {"inhouse-7b": {"name": "In-house 7B", "vendor": "us", "family": "inhouse", "open_weights": True,
                                  "card": "https://example.org/card", "params_b": 7.0, "context_length": 8192,
                                  "chinese": "native", "arch": {"layers": 32, "hidden_size": 4096,
                                  "attention_heads": 32, "kv_heads": 8, "source": "https://example.org/config.json"}}},
        "gpus": {"my-card": {"name": "My card", "vendor": "x", "memory_gib": 12, "bandwidth_gbs": 400,
                             "source": "https://example.org/datasheet"}},
        "scenarios": {"hr-bot": {"title": "HR bot", "lang": "zh", "deploy": "local", "max_gpu_mem": 12}},
    }})
    cat = load_catalog(settings)
    assert cat.model("inhouse-7b").params_b == 7.0
    assert cat.gpu("my-card").memory_gib == 12
    assert cat.scenario("hr-bot").max_gpu_mem == 12
    bad = parse_config({"catalog": {"models": {"Bad ID": {"name": "x"}}}})
    with pytest.raises(ConfigError) as err:
        load_catalog(bad)
    message = str(err.value)
    assert "catalog.models" in message and "vendor" in message and "open_weights" in message


def test_scenario_presets_cover_the_seed_scenarios(catalog):
    assert {"financial-compliance", "scientific-literature", "multilingual-customer-service", "medical", "legal",
            "code-assistant", "edge-device"} <= set(catalog.scenarios)
    for s in catalog.scenarios.values():
        assert s.rationale and s.title_zh


@pytest.mark.slow
def test_bundled_smollm2_gguf_matches_its_catalog_entry(catalog):
    # The one model whose weights ship with Lingxi: its GGUF metadata must agree with the catalog.
    gguf = pytest.importorskip("gguf")
    from lingxi.engines.bundled import smollm2_gguf

    try:
        path = smollm2_gguf()
    except Exception as exc:  # the llamacpp extra is not installed
        pytest.skip(str(exc))
    fields = gguf.GGUFReader(path).fields

    def value(key: str) -> int:
        field = fields[key]
        return int(field.parts[field.data[0]][0])

    entry = catalog.model("smollm2")
    a = entry.arch
    assert value("llama.block_count") == a.layers
    assert value("llama.embedding_length") == a.hidden_size
    assert value("llama.feed_forward_length") == a.intermediate_size
    assert value("llama.attention.head_count") == a.attention_heads
    assert value("llama.attention.head_count_kv") == a.kv_heads
    assert value("llama.context_length") == entry.context_length
    assert len(fields["tokenizer.ggml.tokens"].data) == a.vocab_size

"""The selection advisor: hard filters, reasons for every model, scenarios."""

from __future__ import annotations

import pytest

from lingxi.catalog import Requirements, load_catalog, select
from lingxi.config import parse_config
from lingxi.errors import UsageError


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_every_model_is_either_a_candidate_or_rejected_with_reasons(cat):
    result = select(cat, Requirements(lang="zh", deploy="local", max_gpu_mem=24))
    seen = [c["model"] for c in result.candidates] + [r["model"] for r in result.rejected]
    assert sorted(seen) == sorted(cat.models)
    assert all(c["reasons"] for c in result.candidates)
    assert all(r["why"] for r in result.rejected)


def test_local_24gib_zh_lists_only_models_that_fit(cat):
    result = select(cat, Requirements(lang="zh", deploy="local", max_gpu_mem=24))
    assert len(result.candidates) >= 10
    for c in result.candidates:
        entry = cat.model(c["model"])
        assert entry.open_weights and entry.chinese in ("native", "supported")
        assert c["estimate"]["memory_gib"]["total"] <= 24
    rejected = {r["model"]: " ".join(r["why"]) for r in result.rejected}
    assert "needs" in rejected["qwen2.5-72b-instruct"] and "GiB" in rejected["qwen2.5-72b-instruct"]
    assert "API-only" in rejected["gpt-4o"]
    assert "Chinese" in rejected["llama-3.1-8b-instruct"]
    # A 32B model only fits 24 GiB once quantized; the advisor says so and the score pays for it.
    qwen32 = next(c for c in result.candidates if c["model"] == "qwen2.5-32b-instruct")
    assert qwen32["estimate"]["precision"] == "int4"
    assert any("int4" in r for r in qwen32["reasons"])


def test_scores_are_sorted_and_explained(cat):
    result = select(cat, Requirements(task="code", deploy="either"))
    scores = [c["score"] for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    top = result.candidates[0]
    components = [r.split(" ")[0] for r in top["reasons"][:5]]
    assert components == ["quality", "language", "task", "context", "cost"]
    assert "HumanEval" in top["reasons"][0]


def test_cloud_budget_and_currency(cat):
    result = select(cat, Requirements(deploy="cloud", budget_per_mtok=1.0))
    for c in result.candidates:
        entry = cat.model(c["model"])
        assert not entry.open_weights and entry.price.blended() <= 1.0
    rejected = {r["model"]: " ".join(r["why"]) for r in result.rejected}
    assert "> budget" in rejected["claude-3-opus"]
    assert "price unknown" in rejected["ernie-api"]
    assert "open weights" in rejected["qwen2.5-7b-instruct"]


def test_licence_filter(cat):
    result = select(cat, Requirements(license="commercial", deploy="local"))
    rejected = {r["model"]: " ".join(r["why"]) for r in result.rejected}
    assert "commercial" in rejected["qwen2.5-3b-instruct"]
    llama = next(c for c in result.candidates if c["model"] == "llama-3.1-8b-instruct")
    assert any("conditional" in r for r in llama["reasons"])


def test_context_and_multilingual_filters(cat):
    result = select(cat, Requirements(lang="multi", context=100_000))
    ids = {c["model"] for c in result.candidates}
    assert "gemini-1.5-pro" in ids and "qwen2.5-7b-instruct" in ids
    rejected = {r["model"]: " ".join(r["why"]) for r in result.rejected}
    assert "context window 4096 < required 100000" in rejected["llama-2-7b-chat"]
    assert "language" in rejected["mistral-7b-v0.1"]


def test_scenario_presets_apply_and_flags_override(cat):
    scn = cat.scenario("edge-device")
    req = Requirements.from_scenario(scn)
    assert req.max_gpu_mem == 8 and req.deploy == "local" and req.weights["cost"] == 1.5
    result = select(cat, req)
    assert result.scenario["id"] == "edge-device"
    assert all(c["estimate"]["memory_gib"]["total"] <= 8 for c in result.candidates)
    wider = Requirements.from_scenario(scn, max_gpu_mem=16)
    assert wider.max_gpu_mem == 16 and wider.deploy == "local"
    for name in ("financial-compliance", "medical", "legal"):
        s = cat.scenario(name)
        assert s.deploy == "local" and s.lang == "zh" and s.license == "commercial"
        assert select(cat, Requirements.from_scenario(s)).candidates


def test_user_scenario_from_config():
    settings = parse_config({"catalog": {"scenarios": {"call-centre": {
        "title": "Call centre", "task": "chat", "lang": "zh", "deploy": "cloud", "budget_per_mtok": 0.5,
        "weights": {"cost": 2.0}}}}})
    cat = load_catalog(settings)
    result = select(cat, Requirements.from_scenario(cat.scenario("call-centre")))
    assert result.candidates
    assert all(not cat.model(c["model"]).open_weights for c in result.candidates)
    assert any("(×2)" in r for r in result.candidates[0]["reasons"])


def test_cny_priced_models_need_an_exchange_rate():
    rate = parse_config({"catalog": {"cny_per_usd": 7.0, "models": {"cheap-cn": {
        "name": "Cheap CN API", "vendor": "x", "family": "x", "open_weights": False, "commercial": "api",
        "card": "https://example.org", "chinese": "native",
        "price": {"input_per_mtok": 0.8, "output_per_mtok": 2.0, "currency": "CNY", "as_of": "2024-05-15",
                  "source": "https://example.org/pricing"}}}}})
    with_rate = select(load_catalog(rate), Requirements(deploy="cloud", budget_per_mtok=0.5))
    assert "cheap-cn" in {c["model"] for c in with_rate.candidates}
    no_rate = parse_config({"catalog": {"models": rate.catalog.models}})
    without = select(load_catalog(no_rate), Requirements(deploy="cloud", budget_per_mtok=0.5))
    why = {r["model"]: " ".join(r["why"]) for r in without.rejected}
    assert "cny_per_usd" in why["cheap-cn"]


@pytest.mark.parametrize("kwargs", [{"task": "poetry"}, {"lang": "fr"}, {"deploy": "moon"}, {"license": "gpl"},
                                    {"max_gpu_mem": 0}, {"precision": "int2"}])
def test_bad_requirements_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        Requirements(**kwargs)


def test_a_model_that_cannot_be_sized_is_rejected_only_when_memory_matters():
    settings = parse_config({"catalog": {"models": {"mystery-7b": {
        "name": "Mystery 7B", "vendor": "x", "family": "x", "open_weights": True, "card": "https://example.org",
        "chinese": "native", "context_length": 8192, "commercial": "yes"}}}})
    cat = load_catalog(settings)
    free = select(cat, Requirements(lang="zh", deploy="local"))
    mystery = next(c for c in free.candidates if c["model"] == "mystery-7b")
    assert mystery["estimate"] is None
    limited = select(cat, Requirements(lang="zh", deploy="local", max_gpu_mem=24))
    why = {r["model"]: " ".join(r["why"]) for r in limited.rejected}
    assert "parameter count" in why["mystery-7b"]

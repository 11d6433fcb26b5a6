import pytest

from lingxi.config import BUNDLED_MODELS, Settings, load_config, parse_config
from lingxi.errors import ConfigError, ModelNotFoundError


def test_defaults_work_with_nothing_configured(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_config()
    assert s.source is None
    assert s.model().engine == "llamacpp"
    assert set(BUNDLED_MODELS) <= set(s.all_models())
    assert {"minilm", "e5-small"} <= set(s.all_embedders())


def test_named_models_are_validated_and_typed():
    s = parse_config({
        "models": {"qwen-cloud": {"engine": "openai", "base_url": "https://example.test/v1/", "model": "qwen-plus",
                                  "api_key_env": "DASHSCOPE_API_KEY"}},
        "default_model": "qwen-cloud",
    })
    cfg = s.model()
    assert cfg.base_url == "https://example.test/v1"  # trailing slash trimmed
    assert cfg.max_retries == 2 and cfg.timeout_s == 600 and cfg.first_byte_timeout_s == 60


def test_unknown_engine_names_key_and_choices():
    with pytest.raises(ConfigError) as err:
        parse_config({"models": {"qwen-cloud": {"engine": "foo"}}})
    assert "models.qwen-cloud.engine: unknown engine 'foo'; expected one of llamacpp, transformers, openai, vllm" in str(err.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        parse_config({
            "models": {"a": {"engine": "openai", "base_url": "ftp://x", "model": "m", "timeout_s": -1},
                       "b": {"engine": "llamacpp", "n_treads": 4}},
            "gateway": {"port": 99999},
            "colour": "blue",
        })
    problems = err.value.problems
    assert any(p.startswith("models.a.base_url: must start with http") for p in problems)
    assert any(p.startswith("models.a.timeout_s:") for p in problems)
    assert "models.b.n_treads: unknown key" in problems
    assert any(p.startswith("gateway.port:") for p in problems)
    assert "colour: unknown key" in problems
    assert len(problems) == 5


def test_cross_checks_are_reported_with_field_errors(tmp_path):
    # Used to need two runs: default_model was checked only once every field validated.
    path = tmp_path / "bad.toml"
    path.write_text('default_model = "nope"\n[models.up]\nengine = "openai"\nbase_url = 42\nmodel = "m"\n'
                    '[knowledge]\nchunk_tokens = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problems = err.value.problems
    assert "models.up.base_url: Input should be a valid string (got 42)" in problems
    assert any(p.startswith("knowledge.chunk_tokens:") for p in problems)
    assert "default_model: unknown model 'nope'; known: smollm2, up" in problems
    assert len(problems) == 3


def test_router_model_names_are_checked_with_the_rest():
    # These were found only when the gateway built its router, after every other error was fixed.
    with pytest.raises(ConfigError) as err:
        parse_config({"knowledge": {"chunk_tokens": -1},
                      "gateway": {"router": {"policy": "cascade", "local_model": "tiny",
                                             "rules": [{"model": "smollm2"}, {"model": "gpt-9"}]}}})
    assert err.value.problems[1:] == ["gateway.router.local_model: unknown model 'tiny'",
                                      "gateway.router.strong_model: required for policy 'cascade'",
                                      "gateway.router.rules.1.model: unknown model 'gpt-9'"]


def test_a_cross_check_is_skipped_when_its_own_key_failed():
    with pytest.raises(ConfigError) as err:
        parse_config({"default_model": "a", "models": {"a": {"engine": "openai", "model": "m"}},
                      "knowledge": {"chunk_tokens": "big", "chunk_overlap": 999}})
    # 'a' is defined (its entry is reported as broken); chunk_overlap is not compared with a default
    assert err.value.problems == ["models.a.base_url: required",
                                  "knowledge.chunk_tokens: Input should be a valid integer, unable to parse string "
                                  "as an integer (got 'big')"]


def test_a_model_entry_that_is_not_a_table():
    with pytest.raises(ConfigError) as err:
        parse_config({"models": {"a": 3}})
    assert err.value.problems == ["models.a: must be a table with an engine, got 3"]


def test_missing_required_key():
    with pytest.raises(ConfigError) as err:
        parse_config({"models": {"x": {"engine": "openai", "model": "m"}}})
    assert err.value.problems == ["models.x.base_url: required"]


@pytest.mark.parametrize("text, where", [
    ('[models.a]\nengine = fake\n', "at line 2, column 10"),
    ('[models.a]\nengine = "fake"\nreplies = [1,\n', "at line 3, column 14"),
])
def test_invalid_toml_reports_line_and_column(tmp_path, text, where):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "not valid TOML" in str(err.value) and where in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.toml")
    assert "file not found" in str(err.value)


def test_config_precedence(tmp_path, monkeypatch):
    env_file = tmp_path / "env.toml"
    env_file.write_text('default_model = "f"\n[models.f]\nengine = "fake"\n', encoding="utf-8")
    local = tmp_path / "lingxi.toml"
    local.write_text('default_embedder = "e5-small"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_config().default_embedder == "e5-small"  # ./lingxi.toml
    monkeypatch.setenv("LINGXI_CONFIG", str(env_file))
    assert load_config().default_model == "f"  # $LINGXI_CONFIG beats ./lingxi.toml
    assert load_config(local).default_model == "smollm2"  # --config beats both


def test_unknown_default_model_and_lookup():
    with pytest.raises(ConfigError) as err:
        parse_config({"default_model": "gpt-9"})
    assert "default_model: unknown model 'gpt-9'" in str(err.value)
    with pytest.raises(ModelNotFoundError) as err:
        Settings().model("gpt-9")
    assert "known: smollm2" in str(err.value)


def test_home_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGXI_HOME", str(tmp_path / "h"))
    assert Settings().home_dir == tmp_path / "h"
    assert Settings(home=str(tmp_path / "x")).home_dir == tmp_path / "x"


def test_a_concatenated_embedders_members_are_checked_with_the_rest():
    with pytest.raises(ConfigError) as err:
        parse_config({"embedders": {"h": {"engine": "hash"},
                                    "pair": {"engine": "concat", "members": ["h", "nope"]},
                                    "nested": {"engine": "concat", "members": ["h", "pair"]},
                                    "one": {"engine": "concat", "members": ["h"]}},
                      "gateway": {"port": -1}})
    problems = err.value.problems
    assert "embedders.pair.members: 'nope' is not another embedder" in problems
    assert "embedders.nested.members: 'pair' is itself a concatenation" in problems
    assert any(p.startswith("embedders.one.members:") for p in problems)
    assert any(p.startswith("gateway.port:") for p in problems)
    assert len(problems) == 4
    # a member that failed its own validation is reported once, as itself
    with pytest.raises(ConfigError) as err:
        parse_config({"embedders": {"bad": {"engine": "hash", "dim": -1},
                                    "pair": {"engine": "concat", "members": ["bad", "minilm"]}}})
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith("embedders.bad.dim:")

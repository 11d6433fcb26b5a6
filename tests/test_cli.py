"""The CLI as a user meets it: one-line errors, the right exit codes. The entry point runs as a real
subprocess here; the rest runs in this process (``invoke_lingxi``), which takes the same path
after start-up."""

import json

from conftest import invoke_lingxi, run_lingxi
from local_upstream import LocalUpstream


def assert_one_line_error(proc, code, *needles):
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_version():
    proc = run_lingxi("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("lingxi, version ")


def test_models_list_json(fake_config):
    proc = invoke_lingxi("models", "list", "--json", config=fake_config)
    rows = json.loads(proc.stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["fake"]["engine"] == "fake" and by_name["fake"]["default"] is True
    assert by_name["smollm2"]["engine"] == "llamacpp" and by_name["smollm2"]["bundled"] is True
    assert by_name["minilm"]["kind"] == "embedding"


def test_generate_json_shape(fake_config):
    proc = invoke_lingxi("generate", "What is the capital of France?", "--temperature", "0", "--json", config=fake_config)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"model", "text", "finish_reason", "usage", "timing"}
    assert "Paris" in out["text"] and out["model"] == "fake"
    assert set(out["usage"]) == {"prompt_tokens", "completion_tokens"}
    assert set(out["timing"]) == {"ttft_s", "total_s", "decode_tokens_per_s"}


def test_generate_stream_prints_text(fake_config):
    proc = invoke_lingxi("generate", "hi", "--stream", config=fake_config)
    assert proc.returncode == 0 and proc.stdout.strip() == "Paris is the capital of France."


def test_unknown_model(fake_config):
    assert_one_line_error(invoke_lingxi("generate", "hi", "--model", "gpt-9", config=fake_config), 2,
                          "unknown model 'gpt-9'", "fake", "smollm2")


def test_prompt_longer_than_context(fake_config):
    assert_one_line_error(invoke_lingxi("generate", "word " * 200, config=fake_config), 2,
                          "prompt is 250 tokens", "context window is 64 tokens")


def test_an_empty_prompt_is_a_usage_error(fake_config):
    # It used to generate from nothing (the model's reply to an empty user message).
    assert_one_line_error(invoke_lingxi("generate", "", config=fake_config), 2, "PROMPT is empty")
    assert_one_line_error(invoke_lingxi("generate", "-", stdin=" \n", config=fake_config), 2, "PROMPT is empty")


def test_bad_option_value_is_usage_error(fake_config):
    proc = invoke_lingxi("generate", "hi", "--temperature", "5", config=fake_config)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--temperature" in proc.stderr


def test_invalid_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("default_model = \n", encoding="utf-8")
    assert_one_line_error(run_lingxi("models", "list", config=bad), 2, "not valid TOML", "line 1, column")


def test_invalid_config_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.a]\nengine = "foo"\n[models.b]\nengine = "openai"\nmodel = "x"\n', encoding="utf-8")
    proc = invoke_lingxi("models", "list", config=bad)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "models.a.engine: unknown engine 'foo'" in proc.stderr and "models.b.base_url: required" in proc.stderr


def test_missing_model_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[models.m]\nengine = "llamacpp"\npath = "{tmp_path}/missing.gguf"\n', encoding="utf-8")
    assert_one_line_error(invoke_lingxi("generate", "hi", "-m", "m", config=cfg), 2, f"{tmp_path}/missing.gguf")


def test_missing_extra_names_pip_install(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[models.big]\nengine = "vllm"\npath = "{tmp_path}"\n', encoding="utf-8")
    assert_one_line_error(invoke_lingxi("generate", "hi", "-m", "big", config=cfg), 2, "pip install 'lingxi[vllm]'")


def test_upstream_unreachable_and_401(tmp_path):
    server = LocalUpstream(key="right")
    try:
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            f'[models.down]\nengine = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "x"\nmax_retries = 0\n'
            f'[models.up]\nengine = "openai"\nbase_url = "{server.url}"\nmodel = "x"\napi_key_env = "LX_KEY"\n',
            encoding="utf-8")
        assert_one_line_error(invoke_lingxi("generate", "hi", "-m", "down", config=cfg), 1,
                              "http://127.0.0.1:9/v1/chat/completions", "unreachable")
        assert_one_line_error(invoke_lingxi("generate", "hi", "-m", "up", config=cfg, env={"LX_KEY": "wrong"}), 1,
                              f"{server.url}/chat/completions", "(401)", "LX_KEY")
    finally:
        server.close()


def test_chat_on_a_pipe_keeps_history_and_resets(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[models.f]\nengine = "fake"\nreplies = ["first", "second", "third"]\n', encoding="utf-8")
    proc = invoke_lingxi("chat", "-m", "f", config=cfg, stdin="hello\nagain\n/reset\nfresh\n/exit\nignored\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["first", "second", "third"]
    assert "(conversation reset)" in proc.stderr


def test_embed_json(fake_config):
    proc = invoke_lingxi("embed", "合同", "contract", "--json", config=fake_config)
    out = json.loads(proc.stdout)
    assert out["model"] == "hash" and out["dim"] == 64 and len(out["embeddings"]) == 2
    assert len(out["embeddings"][0]) == 64


def test_embed_without_text_is_usage_error(fake_config):
    assert_one_line_error(invoke_lingxi("embed", config=fake_config, stdin=""), 2, "nothing to embed")

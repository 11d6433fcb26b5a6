"""vLLM in-process, only where CUDA is present (pytest -m gpu)."""

import pytest

from lingxi.config import Settings, VLLMModel
from lingxi.engines import GenerationParams, load_engine

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """SmolLM2 in Hugging Face layout, converted from the bundled GGUF (nothing downloaded)."""
    transformers = pytest.importorskip("transformers")
    from lingxi.engines.bundled import smollm2_gguf

    gguf = smollm2_gguf()
    out = tmp_path_factory.mktemp("smollm2-hf")
    tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok.save_pretrained(out)
    model.save_pretrained(out)
    return out


def test_vllm_greedy_paris_and_streaming(hf_folder):
    pytest.importorskip("vllm")
    engine = load_engine("v", Settings(models={"v": VLLMModel(engine="vllm", path=str(hf_folder), context_length=2048,
                                                              gpu_memory_utilization=0.3)}))
    prompt = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    params = GenerationParams(max_tokens=16, temperature=0)
    result = engine.generate(prompt, params)
    assert "Paris" in result.text and result.usage.completion_tokens > 0
    assert "".join(c.text for c in engine.stream(prompt, params)) == result.text

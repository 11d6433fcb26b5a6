"""A tiny Llama model and tokenizer, built in-process in a second, for the fast tune tests.

The tokenizer is a byte-level BPE trained on a few English and Chinese sentences, with the
ChatML tokens and chat template SmolLM2 uses; the model is a randomly initialised 2-layer
LlamaForCausalLM. Real weights are exercised by the slow tests.
"""

from __future__ import annotations

import json
from pathlib import Path

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = [
    "The capital of France is Paris. The quick brown fox jumps over the lazy dog.",
    "Translate to English: 你好，世界。Hello, world! 合同的违约责任由双方约定。",
    "Question: what is two plus two? Answer: four. 问题：二加二等于几？答案：四。",
    "Lingxi tunes small models on a laptop CPU with LoRA adapters and reports numbers.",
]


def build_tiny_model(folder: Path, layers: int = 2, hidden: int = 32) -> Path:
    """Write a tokenizer + random tiny Llama into ``folder`` (a Hugging Face model folder)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>",
                                                eos_token="<|im_end|>", pad_token="<|im_end|>",
                                                unk_token="<|endoftext|>")
    fast.chat_template = CHATML
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(fast), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    transformers.LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


SFT_ROWS = [
    {"instruction": f"Say the number {i} in words.", "input": "", "output": w}
    for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
] + [{"instruction": "翻译成中文", "input": "hello", "output": "你好"}]
PREF_ROWS = [
    {"prompt": f"What is {i} plus {i}?", "chosen": f"It is {2 * i}.", "rejected": "I do not know, go away."}
    for i in range(12)
]

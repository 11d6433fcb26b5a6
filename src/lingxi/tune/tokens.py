"""Rows to token ids, with which tokens the loss is taken on; batches; the losses over them.

- SFT/chat rows go through the tokenizer's chat template; only the assistant turns (their text
  and end-of-turn token) carry labels, the prompt is context (label ``-100``).
- Raw text carries labels on every token (continued pretraining).
- Preference rows become (prompt, answer) pairs whose answer tokens are scored.

The loss heads compute the output layer only on positions that have a label: the vocabulary
projection (49k rows for SmolLM2) costs as much as several transformer blocks and most prompt
positions never need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IGNORE = -100


@dataclass
class Example:
    """Token ids and labels of one sequence (labels are ``IGNORE`` where no loss is taken)."""

    ids: list[int]
    labels: list[int]

    @property
    def n_labels(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def sft_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation of an SFT or chat row (instruction and input joined by a blank line)."""
    if "messages" in row:
        return list(row["messages"])
    user = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
    out = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    return out + [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]


def prompt_messages(prompt: str | list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def render(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool = False) -> str:
    """The chat template's text; a plain ``role: content`` layout when the tokenizer has none."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
    return text + ("assistant: " if generation_prompt else "")


def encode_chat(tokenizer: Any, messages: list[dict[str, str]], max_len: int) -> Example:
    """Ids of the whole conversation; labels on each assistant turn's text and end-of-turn."""
    full = render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            start = len(render(tokenizer, messages[:i], generation_prompt=True))
            end = len(render(tokenizer, messages[: i + 1]))
            spans.append((start, end))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [tok if any(s <= a < e for s, e in spans) else IGNORE
              for tok, (a, _) in zip(ids, enc["offset_mapping"])]
    if len(ids) > max_len:  # keep the end: the last answer is what the row teaches
        ids, labels = ids[-max_len:], labels[-max_len:]
    return Example(ids, labels)


def encode_text(tokenizer: Any, text: str, max_len: int) -> list[Example]:
    """Raw text split into ``max_len`` windows, every token labelled (an EOS closes the text)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return [Example(ids[i:i + max_len], ids[i:i + max_len]) for i in range(0, len(ids), max_len)
            if len(ids[i:i + max_len]) > 1]


def encode_answer(tokenizer: Any, prompt: str | list[dict[str, str]], answer: str, max_len: int) -> Example:
    """Prompt plus one answer; labels on the answer only. The prompt is cut from the left when
    the pair is too long, the answer from the right."""
    messages = prompt_messages(prompt)
    head = tokenizer(render(tokenizer, messages, generation_prompt=True), add_special_tokens=False)["input_ids"]
    full = render(tokenizer, messages + [{"role": "assistant", "content": answer}])
    body = tokenizer(full, add_special_tokens=False)["input_ids"][len(head):]
    body = body[: max_len // 2] if len(head) + len(body) > max_len else body
    head = head[-(max_len - len(body)):]
    return Example(head + body, [IGNORE] * len(head) + body)


def encode_rows(tokenizer: Any, rows: list[dict[str, Any]], max_len: int, *, kind: str) -> list[Example]:
    """SFT/chat rows (``kind="sft"``) or raw text rows (``kind="text"``) to examples; rows that
    keep no labelled token after truncation are dropped."""
    out: list[Example] = []
    for row in rows:
        if kind == "text":
            out.extend(encode_text(tokenizer, row["text"], max_len))
        else:
            out.append(encode_chat(tokenizer, sft_messages(row), max_len))
    return [e for e in out if e.n_labels > 0]


def pack(examples: list[Example], max_len: int) -> list[Example]:
    """Concatenate examples into sequences of exactly ``max_len`` tokens (the last one shorter).
    Attention crosses example boundaries, as in most packing implementations without
    document masks; the labels keep each example's own mask."""
    out: list[Example] = []
    ids: list[int] = []
    labels: list[int] = []
    for e in examples:
        ids.extend(e.ids)
        labels.extend(e.labels)
        while len(ids) >= max_len:
            out.append(Example(ids[:max_len], labels[:max_len]))
            ids, labels = ids[max_len:], labels[max_len:]
    if len(ids) > 1 and any(x != IGNORE for x in labels[1:]):
        out.append(Example(ids, labels))
    return out


def collate(examples: list[Example], pad_id: int, device: str) -> dict[str, Any]:
    """Right-padded tensors: ``input_ids``, ``attention_mask``, ``labels``."""
    import torch

    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(e.labels)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def model_parts(model: Any) -> tuple[Any, Any]:
    """(decoder without the output layer, output layer) of a causal LM, through a PEFT wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def hidden_states(model: Any, batch: dict[str, Any]) -> Any:
    """The decoder's last hidden states; positions count real tokens only, so left-padded rows
    (generation batches) see the same positions as unpadded ones."""
    decoder, _ = model_parts(model)
    mask = batch["attention_mask"]
    if bool((mask[:, 1:] <= mask[:, :-1]).all()):
        # Right padding (training batches): under the causal mask no real token can see a pad
        # (they all come after it), so the padding mask changes nothing that is scored. Without
        # it attention runs as plain causal attention (SDPA's is_causal kernel), and no
        # [batch, 1, len, len] mask is built for every layer.
        return decoder(input_ids=batch["input_ids"]).last_hidden_state
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return decoder(input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions).last_hidden_state


def hidden_and_head(model: Any, batch: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Last hidden states, the output layer and the next-token targets (shifted labels)."""
    return hidden_states(model, batch)[:, :-1], model_parts(model)[1], batch["labels"][:, 1:]


def token_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """(mean cross-entropy over labelled tokens, number of labelled tokens)."""
    import torch.nn.functional as F

    hidden, head, targets = hidden_and_head(model, batch)
    keep = targets != IGNORE
    n = int(keep.sum())
    logits = head(hidden[keep]).float()
    return F.cross_entropy(logits, targets[keep], reduction="mean"), n


def sequence_logps(model: Any, batch: dict[str, Any]) -> Any:
    """Sum of log-probabilities of each row's labelled tokens (shape ``[batch]``)."""
    import torch

    hidden, head, targets = hidden_and_head(model, batch)
    keep = targets != IGNORE
    logps = torch.log_softmax(head(hidden[keep]).float(), dim=-1)
    picked = logps.gather(-1, targets[keep].unsqueeze(-1)).squeeze(-1)
    rows = keep.nonzero()[:, 0]
    return torch.zeros(targets.shape[0], device=picked.device, dtype=picked.dtype).index_add(0, rows, picked)


def last_hidden(model: Any, batch: dict[str, Any]) -> Any:
    """Hidden state at each row's last real token (for scalar heads: reward, value)."""
    import torch

    hidden = hidden_states(model, batch)
    mask = batch["attention_mask"]
    last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(dim=1)  # right or left padding
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


Pair = tuple[Example, Example]


def encode_pairs(tokenizer: Any, rows: list[dict[str, Any]], max_len: int) -> list[Pair]:
    """(chosen, rejected) examples of preference rows; labels on each answer only."""
    return [(encode_answer(tokenizer, r["prompt"], r["chosen"], max_len),
             encode_answer(tokenizer, r["prompt"], r["rejected"], max_len)) for r in rows]


def pair_batch(pairs: list[Pair], pad_id: int, device: str) -> dict[str, Any]:
    """One batch holding every chosen answer, then every rejected one (rows ``i`` and ``n + i``)."""
    return collate([c for c, _ in pairs] + [r for _, r in pairs], pad_id, device)

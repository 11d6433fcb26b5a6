"""Facts read out of a knowledge base's chunks by a model trusted to write, into a graph.

    lingxi graph extract NAME --kb KB --model strong [--relations TREATS,METABOLIZED_BY] [--types Drug,Disease]

Each chunk is shown to the model with the request for ``{"triples": [{"head", "head_type",
"relation", "tail", "tail_type"}]}``; an engine that constrains decoding gets that JSON Schema
(with the allowed relations and types as enums when given). Every proposed triple then passes
the checks an imported row does (names, labels, no self-reference) and one more, the **quote
rule**: its head and tail must be written in the chunk, so the model cannot name an entity the
text does not. A rejected triple is counted and its reason kept; the rest are written with the
chunk id as their ``source`` and the chunk's document groups as their ``groups``, so graph
answers enforce the same access as the text they came from.

**Who may extract.** Only a model trusted to write (:func:`lingxi.knowledge.answer.too_small` is
false): the bundled SmolLM2-135M would invent facts, so it is refused with the way out named.
There is no extractive fallback: curated facts come in through ``lingxi graph import``.

**Incremental and resumable.** The knowledge base's metadata records, per graph and model, the
hash of each chunk's text once its facts are written (in batches, and at the end). A rerun reads
only new or changed chunks (a changed document's groups count as a change), and first deletes the
facts read from a changed chunk's earlier text and from chunks that are gone (edges whose
``source`` is that chunk; their nodes stay). A graph found empty is read again whole. An
interrupted run rereads at most one batch, and rewriting a fact changes nothing (writes are
idempotent). A fact the graph already holds (imported, or read from another chunk) keeps its
source and groups: extraction only adds, so deleting one chunk's facts never takes an imported
one, and a fact first read from a restricted document stays restricted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lingxi.errors import UsageError
from lingxi.graph.triples import Triple, clean_name, is_label, parse_row
from lingxi.records import json_in_reply
from lingxi.stores.graph import fold

#: Bump when the request changes, so earlier extractions are redone.
PROMPT_VERSION = 1
#: Chunks between two writes of the extraction record.
BATCH = 16
#: The most triples taken from one chunk.
MAX_TRIPLES = 32
MAX_NAME_CHARS = 120

_SYSTEM = (
    "You extract facts from a text for a knowledge graph. Reply with JSON only: "
    '{"triples": [{"head": "...", "head_type": "...", "relation": "...", "tail": "...", "tail_type": "..."}]}. '
    "head and tail are entity names copied exactly as the text writes them (any language); "
    "head_type and tail_type are entity types in CamelCase (Drug, Disease); relation is an UPPER_SNAKE verb "
    "(TREATS, METABOLIZED_BY) read from head to tail. Only facts the text states; none: {\"triples\": []}."
)


@dataclass
class ExtractReport:
    """What an extraction did: ``chunks`` seen, ``read`` by the model, ``skipped`` (already read,
    unchanged), ``proposed`` triples, ``kept`` (written), ``rejected`` (count) with the first
    ``reasons``, ``removed`` (facts read earlier from chunks that changed or are gone),
    ``unreadable`` (replies that were not the JSON asked for: those chunks are asked again next
    run), and the graph's ``written`` report (nodes and edges added, updated, unchanged)."""

    chunks: int = 0
    read: int = 0
    skipped: int = 0
    proposed: int = 0
    kept: int = 0
    rejected: int = 0
    removed: int = 0
    unreadable: int = 0
    reasons: list[str] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"chunks": self.chunks, "read": self.read, "skipped": self.skipped, "proposed": self.proposed,
                "kept": self.kept, "rejected": self.rejected, "removed": self.removed,
                "unreadable": self.unreadable, "reasons": self.reasons,
                **self.written}


def extraction_schema(relations: Sequence[str] = (), types: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON Schema of a reply; ``relations`` / ``types`` (when given) as enums."""
    name = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS}
    rel: dict[str, Any] = {"enum": list(relations)} if relations else {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"}
    typ: dict[str, Any] = {"enum": list(types)} if types else {"type": "string", "pattern": "^[A-Z][A-Za-z0-9]*$"}
    item = {"type": "object", "additionalProperties": False,
            "required": ["head", "head_type", "relation", "tail", "tail_type"],
            "properties": {"head": name, "head_type": typ, "relation": rel, "tail": name, "tail_type": typ}}
    return {"type": "object", "additionalProperties": False, "required": ["triples"],
            "properties": {"triples": {"type": "array", "maxItems": MAX_TRIPLES, "items": item}}}


def check_reply(reply: str, text: str, source: str, groups: Sequence[str], relations: Sequence[str] = (),
                types: Sequence[str] = ()) -> tuple[list[Triple] | None, list[str], int]:
    """``(kept, reasons, proposed)`` for a model's ``reply`` on the chunk ``text``: the triples that
    pass every check, one reason per triple that did not (``source triple N: why``), and how many
    triples the reply held. ``kept`` is None when the reply is not the JSON asked for (the chunk is
    then read again next time)."""
    try:
        data = json_in_reply(reply)
    except ValueError:
        data = None
    rows = data.get("triples") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return None, [f"{source}: the reply is not {{\"triples\": [...]}} JSON"], 0
    kept: list[Triple] = []
    reasons: list[str] = []
    written = fold(clean_name(text))  # names are stored NFKC-folded, spaces collapsed: read the text alike
    for n, row in enumerate(rows[:MAX_TRIPLES], 1):
        where = f"{source} triple {n}"
        if not isinstance(row, dict):
            reasons.append(f"{where}: not an object")
            continue
        fields = {k: row.get(k) for k in ("head", "head_type", "relation", "tail", "tail_type")}
        problems: list[str] = []
        triple = parse_row(fields | {"source": source, "groups": list(groups)}, where, problems)
        if triple is None:
            reasons.append("; ".join(problems))
            continue
        missing = [x for x in (triple.head, triple.tail) if fold(x) not in written]
        if missing:
            reasons.append(f"{where}: {' and '.join(repr(x) for x in missing)} not written in the chunk")
        elif relations and triple.relation not in relations:
            reasons.append(f"{where}: relation {triple.relation} is not one of {', '.join(relations)}")
        elif types and not {triple.head_type, triple.tail_type} <= set(types):
            reasons.append(f"{where}: a type outside {', '.join(types)}")
        else:
            kept.append(triple)
    return kept, reasons, min(len(rows), MAX_TRIPLES)


def preflight(kb: Any, engine: Any, model_name: str, relations: Sequence[str] = (),
              types: Sequence[str] = ()) -> list[Any]:
    """Everything that refuses an extraction, checked before a graph is opened (and created);
    returns the knowledge base's documents.

    Raises:
        UsageError: a bad relation or type name, a model too small to be trusted, an empty
            knowledge base.
    """
    bad = [x for x in (*relations, *types) if not is_label(x)]
    if bad:
        raise UsageError(f"not a relation or type name: {', '.join(bad)} (letters, digits and '_')")
    require_trusted(engine, model_name)
    docs = kb.store.documents()
    if not docs:
        raise UsageError(f"knowledge base '{kb.name}' has no documents to extract facts from")
    return docs


def extract(kb: Any, graph: Any, engine: Any, *, graph_name: str, model_name: str,
            relations: Sequence[str] = (), types: Sequence[str] = (), progress: bool = True) -> ExtractReport:
    """Extract facts from every chunk of ``kb`` into ``graph`` (see the module docstring).

    Raises:
        UsageError: see :func:`preflight`.
    """
    from lingxi.engines.base import GenerationParams

    docs = preflight(kb, engine, model_name, relations, types)
    key = (f"{getattr(graph, 'kind', '')}:{graph_name}|{model_name}|v{PROMPT_VERSION}|{','.join(relations)}|"
           f"{','.join(types)}")
    record_all = kb.store.meta().get("graph_extracted") or {}
    done: dict[str, str] = dict(record_all.get(key) or {})
    if done and graph.counts()["edges"] == 0:  # the graph was emptied or made anew: read everything again
        done = {}
    schema = {"json_schema": json.dumps(extraction_schema(relations, types))} \
        if getattr(engine, "constrained_decoding", False) else {}
    params = GenerationParams(max_tokens=64 + 48 * MAX_TRIPLES, temperature=0.0, **schema)
    work = [(d, hit) for d in docs for hit in kb.store.hits([(i, 0.0) for i in kb.store.chunk_ids(d.doc_no)])]
    report = ExtractReport(chunks=len(work))
    batch: list[Triple] = []
    read: dict[str, str] = {}  # chunk id -> digest, recorded once the batch is written

    def save() -> None:
        kb.store.set_meta({"graph_extracted": {**record_all, key: done}})

    def flush() -> None:
        # what these chunks said before they changed goes first, then what they say now
        report.removed += graph.delete_sources([cid for cid in read if cid in done])
        _write(graph, batch, report)
        done.update(read)
        save()
        batch.clear()
        read.clear()

    current = {hit.id for _, hit in work}
    gone = [cid for cid in done if cid not in current]
    if gone:  # chunks deleted or re-cut since they were read: their facts go with them
        report.removed += graph.delete_sources(gone)
        for cid in gone:
            del done[cid]
        save()

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(work), desc="extracting facts", unit="chunk")
    try:
        for doc, hit in work:
            # the groups count too: a document whose groups changed has its facts written again
            digest = hashlib.sha256(f"{hit.text}\n{','.join(sorted(doc.groups))}".encode()).hexdigest()[:16]
            if done.get(hit.id) == digest:
                report.skipped += 1
            else:
                prompt = [{"role": "system", "content": _SYSTEM + _allowed(relations, types)},
                          {"role": "user", "content": hit.text}]
                kept, reasons, proposed = check_reply(engine.generate(prompt, params).text, hit.text, hit.id,
                                                      doc.groups, relations, types)
                report.read += 1
                report.reasons += reasons[: max(0, 20 - len(report.reasons))]
                if kept is None:  # not the JSON asked for: left unrecorded, so the next run asks again
                    report.unreadable += 1
                else:
                    report.proposed += proposed
                    report.rejected += proposed - len(kept)
                    batch += kept
                    read[hit.id] = digest
                    if len(read) >= BATCH:
                        flush()
            if bar is not None:
                bar.update(1)
        if read:
            flush()
    finally:
        if bar is not None:
            bar.close()
    return report


def require_trusted(engine: Any, model_name: str, what: str = "extract facts") -> None:
    """Refuse a missing model, or one too small to be trusted to write (it would invent facts)."""
    from lingxi.knowledge.answer import too_small

    if engine is None or too_small(engine):
        raise UsageError(f"model '{model_name}' is too small to be trusted to {what} (it would invent "
                         "facts): configure a model of 1B parameters or more (models.NAME with a GGUF path or an "
                         "OpenAI-compatible endpoint) and pass --model NAME, or import curated facts with "
                         "`lingxi graph import`")


def _write(graph: Any, triples: list[Triple], report: ExtractReport) -> None:
    """Write a batch; when one triple makes it fail (two aliases of one node related to each
    other), write the others one by one and count that one as rejected."""
    if not triples:
        return
    try:
        _add(report.written, graph.write(triples, update_existing=False).to_dict())
        report.kept += len(triples)
        return
    except UsageError:
        pass
    for t in triples:
        try:
            _add(report.written, graph.write([t], update_existing=False).to_dict())
            report.kept += 1
        except UsageError as exc:
            report.rejected += 1
            if len(report.reasons) < 20:
                report.reasons.append(str(exc))


def _allowed(relations: Sequence[str], types: Sequence[str]) -> str:
    out = ""
    if relations:
        out += f" Use only these relations: {', '.join(relations)}."
    if types:
        out += f" Use only these types: {', '.join(types)}."
    return out


def _add(total: dict[str, int], more: dict[str, Any]) -> None:
    for k, v in more.items():
        if isinstance(v, int):
            total[k] = total.get(k, 0) + v


__all__ = ["ExtractReport", "check_reply", "extract", "extraction_schema", "preflight", "require_trusted"]

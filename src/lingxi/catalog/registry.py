"""Load the catalog: the shipped data files plus the user's additions from ``[catalog]``.

Shipped files live in ``lingxi/catalog/data`` (``models/*.toml``, ``gpus.toml``,
``scenarios.toml``). A user adds models, GPUs and scenarios in the config file; those win over
shipped entries with the same id. Every problem is reported at once, naming file and key.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ValidationError

from lingxi.catalog.schema import GPU, ModelEntry, Scenario
from lingxi.errors import ConfigError, ModelNotFoundError, UsageError


class CatalogModelNotFoundError(ModelNotFoundError):
    """An id that is not in the catalog; the message suggests the closest ids, else the command
    that lists them (``listing``)."""

    def __init__(self, name: str, known: list[str], kind: str = "catalog model",
                 listing: str = "lingxi models catalog"):
        close = difflib.get_close_matches(name.lower(), known, n=5, cutoff=0.5)
        if not close:
            close = [k for k in known if name.lower().split("-")[0] in k][:5]
        hint = f"; did you mean: {', '.join(close)}?" if close else f"; see '{listing}'"
        UsageError.__init__(self, f"unknown {kind} '{name}'{hint}")
        self.name = name
        self.known = close


@dataclass(frozen=True)
class Catalog:
    """Models, GPUs and scenarios by id (aliases resolve to ids)."""

    models: dict[str, ModelEntry]
    gpus: dict[str, GPU]
    scenarios: dict[str, Scenario]
    cny_per_usd: float | None = None
    _aliases: dict[str, str] = field(default_factory=dict)
    _gpu_aliases: dict[str, str] = field(default_factory=dict)

    def model(self, name: str) -> ModelEntry:
        """The entry for an id or alias (case-insensitive).

        Raises:
            CatalogModelNotFoundError: not in the catalog (the message lists close ids).
        """
        key = name.lower()
        key = self._aliases.get(key, key)
        if key not in self.models:
            raise CatalogModelNotFoundError(name, sorted(self.models))
        return self.models[key]

    def gpu(self, name: str) -> GPU:
        key = name.lower()
        key = self._gpu_aliases.get(key, key)
        if key not in self.gpus:
            raise CatalogModelNotFoundError(name, sorted(self.gpus), kind="GPU", listing="lingxi models gpus")
        return self.gpus[key]

    def scenario(self, name: str) -> Scenario:
        if name not in self.scenarios:
            raise CatalogModelNotFoundError(name, sorted(self.scenarios), kind="scenario",
                                            listing="lingxi models scenarios")
        return self.scenarios[name]

    def usd(self, amount: float | None, currency: str) -> float | None:
        """``amount`` in USD, or None when it is CNY and no exchange rate is configured."""
        if amount is None:
            return None
        if currency == "USD":
            return amount
        return amount / self.cny_per_usd if self.cny_per_usd else None


def _read_toml(name: str, text: str, problems: list[str]) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{name}: not valid TOML: {exc}")
        return {}


def _validate(kind: type[BaseModel], rows: list[Any], where: str, problems: list[str]) -> list[Any]:
    out = []
    for i, row in enumerate(rows):
        label = f"{where}[{i}]" + (f" ({row.get('id')})" if isinstance(row, dict) and row.get("id") else "")
        try:
            out.append(kind.model_validate(row))
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                key = ".".join(str(p) for p in err["loc"]) or "(entry)"
                problems.append(f"{label}.{key}: {err['msg'].removeprefix('Value error, ')}")
    return out


def shipped_files() -> dict[str, str]:
    """Name -> text of every data file shipped in the package."""
    root = resources.files("lingxi.catalog") / "data"
    files = {}
    for item in sorted(root.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".toml"):
            files[item.name] = item.read_text(encoding="utf-8")
    for item in sorted((root / "models").iterdir(), key=lambda p: p.name):
        if item.name.endswith(".toml"):
            files[f"models/{item.name}"] = item.read_text(encoding="utf-8")
    return files


@lru_cache(maxsize=1)
def _shipped() -> tuple[tuple[ModelEntry, ...], tuple[GPU, ...], tuple[Scenario, ...]]:
    problems: list[str] = []
    models: list[ModelEntry] = []
    gpus: list[GPU] = []
    scenarios: list[Scenario] = []
    for name, text in shipped_files().items():
        data = _read_toml(name, text, problems)
        models += _validate(ModelEntry, data.get("models", []), f"{name}: models", problems)
        gpus += _validate(GPU, data.get("gpus", []), f"{name}: gpus", problems)
        scenarios += _validate(Scenario, data.get("scenarios", []), f"{name}: scenarios", problems)
    if problems:  # a broken shipped file is a bug in Lingxi, but say exactly where
        raise ConfigError(problems, "lingxi/catalog/data")
    return tuple(models), tuple(gpus), tuple(scenarios)


def load_catalog(settings: Any = None) -> Catalog:
    """The shipped catalog merged with ``settings.catalog`` additions.

    Raises:
        ConfigError: a user addition is invalid (every problem listed, keyed ``catalog.…``) or
            two entries share an id or alias.
    """
    models, gpus, scenarios = _shipped()
    cfg = getattr(settings, "catalog", None)
    problems: list[str] = []
    user_models: list[ModelEntry] = []
    user_gpus: list[GPU] = []
    user_scenarios: list[Scenario] = []
    if cfg is not None:
        user_models = _validate(ModelEntry, [{"id": k, **v} for k, v in cfg.models.items()], "catalog.models", problems)
        user_gpus = _validate(GPU, [{"id": k, **v} for k, v in cfg.gpus.items()], "catalog.gpus", problems)
        user_scenarios = _validate(
            Scenario, [{"id": k, **v.model_dump(exclude_none=True)} for k, v in cfg.scenarios.items()],
            "catalog.scenarios", problems,
        )
    by_id = {m.id: m for m in models}
    by_id.update({m.id: m for m in user_models})
    gpu_by_id = {g.id: g for g in gpus}
    gpu_by_id.update({g.id: g for g in user_gpus})
    aliases: dict[str, str] = {}
    for m in by_id.values():
        for alias in m.aliases:
            alias = alias.lower()
            if alias in by_id or (alias in aliases and aliases[alias] != m.id):
                problems.append(f"alias '{alias}' of '{m.id}' is already used by '{aliases.get(alias, alias)}'")
            aliases[alias] = m.id
    gpu_aliases = {a.lower(): g.id for g in gpu_by_id.values() for a in g.aliases}
    if problems:
        raise ConfigError(problems, getattr(settings, "source", None))
    return Catalog(
        models=dict(sorted(by_id.items())),
        gpus=gpu_by_id,
        scenarios={**{s.id: s for s in scenarios}, **{s.id: s for s in user_scenarios}},
        cny_per_usd=getattr(cfg, "cny_per_usd", None),
        _aliases=aliases,
        _gpu_aliases=gpu_aliases,
    )

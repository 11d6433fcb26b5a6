"""Who is calling: :class:`Caller`, shared by the gateway, the knowledge base and guard/audit stages.

Importing this module imports no layer (the key type is only named for type checkers), so a
stage, a store or a CLI command can take a ``Caller`` without loading the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lingxi.stores.keys import ApiKey

#: The group of an operator key: every document, ``/metrics`` and ``/admin``.
OPERATOR = "*"


@dataclass(frozen=True)
class Caller:
    """Who is calling: their key (None when the gateway runs open on loopback) and tenant."""

    key: ApiKey | None
    tenant: str

    @property
    def trusted(self) -> bool:
        """The local user of an open loopback gateway, or an operator key."""
        return self.key is None or OPERATOR in self.key.groups

    @property
    def groups(self) -> list[str] | None:
        """Knowledge-base groups this caller may read: None = every document; a list = documents
        sharing one of them plus public ones (a key made without groups sees public ones only)."""
        return None if self.trusted else list(self.key.groups)  # type: ignore[union-attr]

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key is not None else None


__all__ = ["OPERATOR", "Caller"]

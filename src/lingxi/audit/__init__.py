"""The audit trail: an append-only, tamper-evident record of every gateway request.

See :mod:`lingxi.audit.log` for how the chain, the signed checkpoints, verification, export
and retention work; the gateway writes to it through the ``audit`` stage
(:mod:`lingxi.guard.stages`), and ``lingxi audit verify|export|prune`` reads it.
"""

from __future__ import annotations

from lingxi.audit.log import AuditLog, AuditRecord, Problem, Verification, audit_key, open_audit_log

__all__ = ["AuditLog", "AuditRecord", "Problem", "Verification", "audit_key", "open_audit_log"]

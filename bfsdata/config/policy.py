"""Threshold policies as written in a pipeline (`report.policy`): parsed and checked here, so the
configuration refuses a bad one when it is loaded; `bfsdata.judging.thresholds` applies them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Policy:
    kind: Literal["accuracy", "balanced", "frr", "escape"]
    limit: float | None = None  # frr / escape: the rate allowed, in [0, 1]

    def __str__(self) -> str:
        return self.kind if self.limit is None else f"{self.kind}:{self.limit:g}"


def parse_policy(policy: str | Policy) -> Policy:
    """'accuracy', 'balanced', 'frr:X' or 'escape:X' with X in [0, 1]."""
    if isinstance(policy, Policy):
        return policy
    usage = "expected 'accuracy', 'balanced', 'frr:X' or 'escape:X' with X in [0, 1]"
    kind, sep, arg = str(policy).strip().partition(":")
    if kind in ("accuracy", "balanced"):
        if sep:
            raise ValueError(f"policy {policy!r} takes no ':' argument; {usage}")
        return Policy(kind)
    if kind not in ("frr", "escape"):
        raise ValueError(f"unknown threshold policy {policy!r}; {usage}")
    try:
        limit = float(arg)
    except ValueError:
        raise ValueError(f"policy {policy!r}: {arg!r} is not a number; {usage}") from None
    if not 0.0 <= limit <= 1.0:
        raise ValueError(f"policy {policy!r}: rate {limit} is outside [0, 1]; {usage}")
    return Policy(kind, limit)

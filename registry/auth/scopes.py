"""Scope strings of the token spec: ``type[(class)]:name:actions``.

The name may itself contain colons (``localhost:5000/team/app``), so a scope is
split at its first colon (the type) and its last one (the actions).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: tuple[str, ...]
    klass: str | None = None

    def __str__(self) -> str:
        t = f"{self.type}({self.klass})" if self.klass else self.type
        return f"{t}:{self.name}:{','.join(self.actions)}"


def parse_scope(text: str) -> Scope | None:
    """One scope, or None when it does not follow the grammar."""
    text = text.strip()
    first = text.find(":")
    last = text.rfind(":")
    if first <= 0 or last == first:
        return None
    rtype, name, actions = text[:first], text[first + 1 : last], text[last + 1 :]
    klass = None
    if rtype.endswith(")") and "(" in rtype:
        rtype, klass = rtype[:-1].split("(", 1)
        if not klass:
            return None
    if not rtype or not name or not rtype.replace("-", "").replace("_", "").isalnum():
        return None
    acts = tuple(dict.fromkeys(a.strip() for a in actions.split(",") if a.strip()))
    return Scope(rtype, name, acts, klass)


def parse_scopes(values: list[str] | tuple[str, ...]) -> list[Scope]:
    """Every well-formed scope in ``values`` (each may hold several, space-separated), merged by resource."""
    merged: dict[tuple[str, str | None, str], list[str]] = {}
    for value in values:
        for part in value.split():
            s = parse_scope(part)
            if s is None:
                continue
            acts = merged.setdefault((s.type, s.klass, s.name), [])
            acts.extend(a for a in s.actions if a not in acts)
    return [Scope(t, n, tuple(a), k) for (t, k, n), a in merged.items()]


def challenge_scope(rtype: str, name: str, action: str) -> str:
    """The scope a 401 challenge names: pushes ask for ``pull,push`` (what clients request)."""
    actions = "pull,push" if (rtype == "repository" and action == "push") else action
    return f"{rtype}:{name}:{actions}"

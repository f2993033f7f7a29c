"""Short, readable names for configurations: what differs from the task's defaults."""

from __future__ import annotations

from typing import Any

HIDDEN_KEYS = frozenset({"seed", "epochs"})


def short_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def describe_config(config: dict[str, Any], defaults: dict[str, Any], limit: int | None = None) -> str:
    """`key=value` for the known parameters whose value differs from the defaults."""
    changed = [
        f"{key}={short_value(value)}"
        for key, value in config.items()
        if key in defaults and key not in HIDDEN_KEYS and defaults[key] != value
    ]
    if limit is not None and len(changed) > limit:
        changed = changed[:limit] + ["..."]
    return " ".join(changed) or "defaults"

"""Events on the wire: as dicts (the pipe to the dashboard), as JSON lines (events.jsonl), and
back, checked field by field so that a damaged or hand-edited line is skipped, never trusted."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from engine.run.events import (
    CheckpointSaved,
    Detached,
    EpochEnd,
    Evaluation,
    Event,
    Failed,
    Finished,
    Log,
    LrFound,
    Paused,
    Progress,
    Resumed,
    RunStarted,
    Status,
    Steered,
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        Status,
        Log,
        RunStarted,
        Progress,
        Evaluation,
        EpochEnd,
        CheckpointSaved,
        Paused,
        Resumed,
        LrFound,
        Steered,
        Finished,
        Failed,
        Detached,
    )
}


def to_dict(event: Event) -> dict[str, Any]:
    """The event as a JSON-able dict with its ``kind``."""
    return {"kind": event.kind, **asdict(event)}


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such floats become null (readers see a missing value)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_json_line(event: Event) -> str:
    """The event as one line of strict JSON (no bare NaN, which most JSON readers refuse)."""
    data = to_dict(event)
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)


def from_json_line(line: str | bytes) -> Event | None:
    """One events.jsonl line as an event; None for a torn or damaged line (invalid UTF-8, too deeply
    nested, fields of the wrong type) or a kind this version does not know."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return from_dict(data) if isinstance(data, dict) else None


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a field's type (one level into lists): a damaged or hand-edited
    file must not hand a string to code that adds numbers."""
    origin = get_origin(hint)
    if origin in (Union, UnionType):
        return any(_fits(value, h) for h in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    if origin is list:
        (item,) = get_args(hint) or (Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


_FIELD_TYPES: dict[str, dict[str, Any]] = {}


def _field_types(cls: type[Event]) -> dict[str, Any]:
    if cls.kind not in _FIELD_TYPES:
        _FIELD_TYPES[cls.kind] = {name: hint for name, hint in get_type_hints(cls).items() if name != "kind"}
    return _FIELD_TYPES[cls.kind]


def from_dict(data: dict[str, Any]) -> Event | None:
    """Rebuild an event; None for kinds this version does not know. Unknown fields are dropped
    so logs written by newer versions still load."""
    cls = EVENT_TYPES.get(str(data.get("kind")))
    if cls is None:
        return None
    types = _field_types(cls)
    try:
        values = cls.upgrade({k: v for k, v in data.items() if k in types})
    except (ValueError, TypeError):
        return None
    if not all(_fits(v, types[k]) for k, v in values.items()):
        return None
    try:
        return cls(**values)
    except TypeError:
        return None

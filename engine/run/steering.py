"""Steering a running training: what may be changed (LR multiplier, length, stop rules), how a
request is written and checked, and the early-stop rules. No torch: the dashboard and the
``steer`` command check a request here before it travels; the trainer applies it
(engine/train/steering.py)."""

from __future__ import annotations

import math
import re
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

LR_SCALE = "lr_scale"
EPOCHS = "epochs"
EARLY_STOP = "early_stop"
TARGET = "target_accuracy"
WHATS = (LR_SCALE, EPOCHS, EARLY_STOP, TARGET)
"""What may be steered, in the order its code travels between ranks (code = index + 1)."""

NAMES = {LR_SCALE: "LR multiplier", EPOCHS: "epochs", EARLY_STOP: "early stop", TARGET: "target accuracy"}
BRIEF = {LR_SCALE: "lr", EPOCHS: "epochs", EARLY_STOP: "early stop", TARGET: "target"}
"""Shorter names, for a list of acts in a table cell."""

# Where a steering act came from (kept in its event: who changed the run, and how).
DASHBOARD = "dashboard"
ATTACHED = "attached dashboard"
BROWSER = "browser"
COMMAND_LINE = "command line"
RESUME = "resume option"
LR_FINDER = "lr finder"
SOURCES = (DASHBOARD, ATTACHED, BROWSER, COMMAND_LINE, RESUME, LR_FINDER)

LR_SCALE_RANGE = (1e-4, 1e4)
MAX_EPOCHS = 100_000


@dataclass(frozen=True)
class SteerAct:
    """One steering request. ``extra``: for ``lr_scale`` and ``epochs`` 1 means relative (times
    the multiplier, plus/minus epochs); for ``early_stop`` the min-delta in accuracy points."""

    what: str
    value: float
    extra: float = 0.0
    source: str = DASHBOARD
    request: str = ""
    """The asker's id for this act: its Steered event carries it back (two askers at once each
    read their own answer)."""

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, raw: object) -> SteerAct:
        """The act a message carries; ValueError with a one-line reason for a malformed one."""
        if not isinstance(raw, dict):
            raise ValueError("a steer request needs what/value")
        what, value, extra, source = raw.get("what"), raw.get("value"), raw.get("extra", 0.0), raw.get("source")
        if what not in WHATS:
            raise ValueError(f"cannot steer {what!r}; one of: {', '.join(WHATS)}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (value, extra)):
            raise ValueError("a steer request's value must be a finite number")
        source = source if source in SOURCES else COMMAND_LINE
        request = raw.get("request", "")
        if not (isinstance(request, str) and len(request) <= 64 and request.isprintable()):
            raise ValueError("a steer request's id must be up to 64 printable characters")
        return cls(str(what), float(value), float(extra), str(source), request)  # type: ignore[arg-type]

    def packed(self) -> list[int]:
        """As three int64 words (code, value bits, extra bits): ranks agree on it by an all-reduce."""
        return [WHATS.index(self.what) + 1, _bits(self.value), _bits(self.extra)]

    @classmethod
    def unpacked(cls, word: list[int], source: str) -> SteerAct | None:
        if not word[0]:
            return None
        return cls(WHATS[word[0] - 1], _float(word[1]), _float(word[2]), source)


NO_ACT = [0, 0, 0]


def _bits(x: float) -> int:
    return int(struct.unpack("<q", struct.pack("<d", x))[0])


def _float(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<q", bits))[0])


# -- reading requests typed by a person --------------------------------------------------------
def parse_lr_scale(text: str, source: str = DASHBOARD) -> SteerAct:
    """'0.5' or 'x0.5' sets the multiplier; '*2' or '/2' multiplies the current one."""
    t = text.strip().lower().replace("×", "x")
    relative = t.startswith(("*", "/"))
    body = t.lstrip("x*/").strip()
    try:
        value = float(body)
    except ValueError:
        raise ValueError(f"LR multiplier {text.strip()!r} is not a number (e.g. 0.5, x2, *2, /2)") from None
    if t.startswith("/") and value:
        value = 1.0 / value
    low, high = LR_SCALE_RANGE
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"LR multiplier must be between {low:g} and {high:g} (got {text.strip()})")
    return SteerAct(LR_SCALE, value, 1.0 if relative else 0.0, source)


def parse_epochs(text: str, source: str = DASHBOARD) -> SteerAct:
    """'30' sets the length; '+5' / '-2' change it."""
    t = text.strip()
    if not re.fullmatch(r"[+-]?\d{1,6}", t):
        raise ValueError(f"epochs {t!r} must be a whole number (30), or a change (+5, -2)")
    relative = t[0] in "+-"
    value = int(t)
    if not relative and not 1 <= value <= MAX_EPOCHS:
        raise ValueError(f"epochs must be between 1 and {MAX_EPOCHS:,} (got {t})")
    return SteerAct(EPOCHS, float(value), 1.0 if relative else 0.0, source)


@dataclass(frozen=True)
class EarlyStop:
    """Stop once test accuracy has not beaten its best by more than ``min_delta`` (accuracy
    points) for ``patience`` epochs."""

    patience: int
    min_delta: float = 0.0

    def __str__(self) -> str:
        return f"patience={self.patience}" + (f",min-delta={self.min_delta:g}" if self.min_delta else "")


def rule_text(patience: float, min_delta: float) -> str:
    """An early-stop rule as the config keeps it ('' when off)."""
    return str(EarlyStop(int(patience), min_delta)) if patience else ""


def parse_early_stop_rule(text: str) -> EarlyStop | None:
    """'patience=N[,min-delta=D]' (or just 'N'); 'off' or '' is None. ValueError otherwise."""
    t = text.strip().lower().replace(" ", "")
    if t in ("", "off", "0", "none"):
        return None
    if re.fullmatch(r"\d+", t):
        t = f"patience={t}"
    values: dict[str, str] = {}
    for part in t.split(","):
        key, _, value = part.partition("=")
        if key not in ("patience", "min-delta", "min_delta") or not value:
            raise ValueError(f"early stop {text.strip()!r}: write patience=N[,min-delta=D] (D in accuracy points)")
        values[key.replace("_", "-")] = value
    if "patience" not in values:
        raise ValueError(f"early stop {text.strip()!r} needs patience=N")
    try:
        patience, delta = int(values["patience"]), float(values.get("min-delta", "0"))
    except ValueError:
        raise ValueError(f"early stop {text.strip()!r}: patience is a whole number, min-delta a number") from None
    if not 1 <= patience <= 10_000 or not (math.isfinite(delta) and 0 <= delta < 100):
        raise ValueError(f"early stop {text.strip()!r}: patience 1..10000, min-delta 0..100 points")
    return EarlyStop(patience, delta)


def given(text: str, what: str) -> str:
    """``text`` as typed by a person: an empty value is refused, never read as off ("off" is)."""
    if not text.strip():
        raise ValueError(f"{NAMES[what]} needs a value ({EXAMPLES[what]})")
    return text


EXAMPLES = {LR_SCALE: "e.g. 0.5, x2, *2, /2", EPOCHS: "e.g. 30, +5, -2",
            EARLY_STOP: "patience=N[,min-delta=D], or off", TARGET: "e.g. 93, 93%, 0.93, or off"}  # fmt: skip


def parse_early_stop(text: str, source: str = DASHBOARD) -> SteerAct:
    rule = parse_early_stop_rule(given(text, EARLY_STOP))
    return SteerAct(EARLY_STOP, float(rule.patience if rule else 0), rule.min_delta if rule else 0.0, source)


def parse_target_value(text: str) -> float:
    """'90', '90%' or '0.9' as the fraction 0.9; 'off' or '0' as 0 (no target)."""
    t = text.strip().rstrip("%").strip().lower()
    if t in ("", "off", "none"):
        return 0.0
    try:
        value = float(t)
    except ValueError:
        raise ValueError(f"target accuracy {text.strip()!r} is not a number (e.g. 93, 93%, 0.93, off)") from None
    fraction = value / 100 if value > 1 or text.strip().endswith("%") else value
    if not (math.isfinite(fraction) and 0 <= fraction <= 1):
        raise ValueError(f"target accuracy must be between 0 and 100% (got {text.strip()})")
    return fraction


def parse_target(text: str, source: str = DASHBOARD) -> SteerAct:
    return SteerAct(TARGET, parse_target_value(given(text, TARGET)), 0.0, source)


PARSERS = {LR_SCALE: parse_lr_scale, EPOCHS: parse_epochs, EARLY_STOP: parse_early_stop, TARGET: parse_target}


# -- what the trainer keeps ------------------------------------------------------------------------
@dataclass
class SteerState:
    """The steered part of a run, kept in every checkpoint (plain values only): the multiplier,
    the schedule's first length and its re-plans, the epoch-end accuracies the stop rules read,
    and every act so far."""

    lr_scale: float = 1.0
    first_epochs: int = 0
    replans: list[list[int]] = field(default_factory=list)  # [at global step, new epochs]
    accuracies: list[float] = field(default_factory=list)
    acts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: object, first_epochs: int) -> SteerState:
        """From a checkpoint (an older one has none: the run was never steered)."""
        if not isinstance(raw, dict):
            return cls(first_epochs=first_epochs)
        return cls(
            lr_scale=float(raw.get("lr_scale", 1.0)),
            first_epochs=int(raw.get("first_epochs") or first_epochs),
            replans=[[int(a), int(e)] for a, e in raw.get("replans", [])],
            accuracies=[float(a) for a in raw.get("accuracies", [])],
            acts=[dict(a) for a in raw.get("acts", []) if isinstance(a, dict)],
        )


def early_stop_cause(accuracies: list[float], rule: EarlyStop | None) -> str:
    """Why the early-stop rule ends the run now ("" while it does not)."""
    if rule is None or not accuracies:
        return ""
    best, best_at = -math.inf, 0
    for i, acc in enumerate(accuracies):
        if acc * 100 > best * 100 + rule.min_delta or i == 0:
            best, best_at = acc, i
    waited = len(accuracies) - 1 - best_at
    if waited < rule.patience:
        return ""
    gain = f"a gain over {rule.min_delta:g} points" if rule.min_delta else "a better test accuracy"
    # (plain words, not wording.plural: events.py reads this module, and wording reads events)
    epochs = f"{waited} epoch" + ("" if waited == 1 else "s")
    return (f"early stop: {epochs} without {gain} (best {100 * best:.2f}% at epoch {best_at + 1}, "
            f"patience {rule.patience})")  # fmt: skip


def target_cause(accuracy: float, target: float, epoch: int) -> str:
    """Why the target-accuracy rule ends the run now ("" while it does not)."""
    if target <= 0 or accuracy < target:
        return ""
    return f"target accuracy {100 * target:g}% reached at epoch {epoch} ({100 * accuracy:.2f}%)"


def shown(what: str, value: float, extra: float = 0.0) -> str:
    """A steered value as a person reads it: 'x0.5', '30', 'patience=3', '93%', 'off'; a change
    ('*2', '+5') where ``extra`` makes it relative."""
    if what == LR_SCALE:
        return f"{'*' if extra else 'x'}{value:.3g}"
    if what == EPOCHS:
        return f"{int(value):+d}" if extra else f"{int(value)}"
    if what == EARLY_STOP:
        return str(EarlyStop(int(value), extra)) if value else "off"
    return f"{100 * value:g}%" if value else "off"


def legacy_value(what: str, text: str) -> tuple[float, float]:
    """A value as :func:`shown` wrote it into events before they carried numbers: (value, extra)."""
    if what == LR_SCALE:
        return float(text.strip().lstrip("x")), 0.0
    if what == EPOCHS:
        return float(int(text)), 0.0
    if what == EARLY_STOP:
        rule = parse_early_stop_rule(text)
        return (float(rule.patience), rule.min_delta) if rule else (0.0, 0.0)
    return parse_target_value(text), 0.0

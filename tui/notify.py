"""What the dashboard tells the user outside its panes: the terminal notification at a run's
end, and the offline fallback offered when a download failed."""

from __future__ import annotations

from engine.run import events as ev
from engine.run.config import TrainConfig
from engine.run.wording import percent


def notification_escapes(title: str, body: str) -> str:
    """The notification escapes that terminals forward over SSH: OSC 777 (rxvt, foot, Ghostty,
    VS Code) and OSC 9 (iTerm2, Windows Terminal, kitty). Unknown escapes are ignored."""
    clean = " ".join(f"{title}: {body}".replace("\x1b", " ").replace("\x07", " ").replace(";", ",").split())[:200]
    short = " ".join(title.replace(";", ",").split())
    return f"\x1b]777;notify;cifar-tui {short};{clean}\x07\x1b]9;cifar-tui: {clean}\x07"


def end_notice(event: ev.Finished | ev.Failed) -> tuple[str, str]:
    """A run's end as a notification's title and body."""
    if isinstance(event, ev.Failed):
        return "training failed", event.message
    return f"training {event.reason}", f"test accuracy {percent(event.test_accuracy)}"


def offline_config(cfg: TrainConfig, failure: ev.Failed) -> tuple[TrainConfig, str]:
    """After a failed download, ``cfg`` fully offline in one step (no network for one download
    means none for the other; a local --weights file is kept), and what changed, in words."""
    offline = cfg.with_overrides(
        **({"data": "demo"} if failure.detail == "data" else {}),
        **({"weights": "none"} if cfg.weights == "imagenet" else {}),
    )
    changed = (
        ("the built-in demo data", offline.data != cfg.data),
        ("no pretrained weights", offline.weights != cfg.weights),
    )
    return offline, " and ".join(part for part, used in changed if used)

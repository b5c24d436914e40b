"""The dashboard's key map, declared once: the app's bindings, the help screen, ``--help``'s
key list and README's key table are all made from :data:`KEYS` (a test holds README equal)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    """One dashboard key: what it does, said at three lengths."""

    key: str
    """Textual's name of the key."""
    action: str
    """The app's action it runs."""
    footer: str
    """The footer's label (shown only when ``in_footer``): a word or two, so that every footer key,
    q and ? among them, fits in 80 columns."""
    brief: str
    """A few words for ``cifar-tui --help``."""
    help: str
    """The help screen's line (Textual markup allowed)."""
    readme: str
    """README's table row (Markdown)."""
    in_footer: bool = True
    id: str | None = None

    @property
    def label(self) -> str:
        """The key as a user types it."""
        return {"question_mark": "?", "pageup": "PgUp", "pagedown": "PgDn", "minus": "-", "plus": "+"}.get(
            self.key, self.key
        )

    @property
    def action_name(self) -> str:
        """The action without its arguments."""
        return self.action.split("(")[0]


KEYS: tuple[Key, ...] = (
    Key("p", "pause", "pause", "pause/resume", "pause / resume training",
        "pause / resume (at the next batch boundary)", id="pause"),
    Key("s", "save", "save", "save a checkpoint", "save a checkpoint now (its path appears in the log)",
        "save a checkpoint now (the path appears in the log)", id="save"),
    Key("e", "evaluate", "eval", "evaluate now", "evaluate on the test split now; training goes on after",
        "evaluate on the test split now, refresh per-class accuracy, plot the result (magenta \"now %\"); "
        "training continues", id="evaluate"),
    Key("t", "steer", "steer", "steer the run", "steer: LR multiplier, epochs, early stop, target accuracy",
        "steer the run (a dialog): the LR multiplier, the number of epochs (the schedule is re-planned), early "
        "stopping and a target accuracy; applied at the next batch", id="steer"),
    Key("minus", "steer_lr(0.5)", "LR/2", "halve the LR", "halve the learning rate (multiplier x0.5)",
        "halve the learning rate: the multiplier on the scheduled LR goes x0.5", id="lr_down"),
    Key("plus", "steer_lr(2.0)", "LR×2", "double the LR", "double the learning rate (multiplier x2; = too)",
        "double the learning rate: the multiplier on the scheduled LR goes x2 (`=` does it too)", id="lr_up"),
    Key("c", "confusion", "confusion", "confusion matrix", "confusion matrix; Enter on a cell: its mistakes",
        "confusion matrix: the arrows move, Enter on a cell shows its mistakes as pictures (a: where the "
        "model looked), m the most confident mistakes", id="confusion"),
    Key("b", "batch_view", "Batch", "training batch", "what the model sees: a batch before / after augmentation",
        "what the model sees: the training batch before and after augmentation, as pictures", in_footer=False,
        id="batch"),
    Key("v", "cycle_plots", "Plots", "plots", "plots: all, loss, accuracy, learning rate",
        "plots: all, then loss, accuracy or learning rate alone (a bigger plot at 80x24)", in_footer=False,
        id="plots"),
    Key("l", "log_scale", "Log loss", "log-scale loss", "loss axis: linear / log scale",
        "loss axis: linear / log scale (the late, flat part of a loss curve reads better on a log axis)",
        in_footer=False, id="log_scale"),
    Key("m", "smoothing", "Smoothing", "smoothing", "smoothing of the training loss: off, 0.6, 0.9, 0.99",
        "smoothing of the training loss: off, 0.6, 0.9 (default), 0.99 — TensorBoard's meaning (weight per "
        "step), debiased at the start, and its reach stays in steps when a long run's history is downsampled",
        in_footer=False, id="smoothing"),
    Key("r", "runs", "runs", "runs (t: compare configs)", "runs: compare runs (curves and configs)",
        "runs: every run in the runs folder (state, best/final accuracy, epochs, time, name, recipe); `space` "
        "selects runs, their test-accuracy curves are overlaid, `t` switches to a side-by-side table of their "
        "configs (the options that differ first, highlighted) with best/final accuracy and time",
        in_footer=False, id="runs"),
    Key("x", "stop_training", "Stop training", "stop training", "stop training (asks: save and stop, stop, cancel)",
        "stop training (asks: save and stop / stop without saving / cancel); the results stay on screen",
        in_footer=False, id="stop"),
    Key("d", "detach", "Detach", "detach", "detach: training goes on; [b]cifar-tui attach[/b] brings it back",
        "detach: training goes on in the background, `cifar-tui attach` brings the dashboard back",
        in_footer=False, id="detach"),
    Key("q", "quit_app", "quit", "quit (asks while training)", "quit (training: asks to save first; attached: just closes)",
        "quit; while training it asks: save and quit / quit without saving / cancel (attached: just closes)",
        id="quit"),
    Key("pageup", "scroll_log(-1)", "Log up", "log: page up", "scroll the log up a page (the mouse wheel too)",
        "scroll the log pane up a page (the mouse wheel scrolls it too; long lines wrap)", in_footer=False,
        id="log_up"),
    Key("pagedown", "scroll_log(1)", "Log down", "log: page down", "scroll the log down a page (to the end: follow)",
        "scroll the log pane down a page; at the end it follows new lines again", in_footer=False, id="log_down"),
    Key("question_mark", "help", "help", "help", "this help", "help", id="help"),
)  # fmt: skip


ACTS_ON_TRAINING = frozenset({"pause", "save", "evaluate", "stop_training", "detach", "steer", "steer_lr"})
"""Actions that only mean something while a trainer runs."""


def bindings() -> list[Binding | tuple[str, str] | tuple[str, str, str]]:
    """The app's bindings: every key of :data:`KEYS`, and Ctrl+C as a second way to quit."""
    out: list[Binding | tuple[str, str] | tuple[str, str, str]] = [
        Binding(k.key, k.action, k.footer, show=k.in_footer, id=k.id, key_display=k.label) for k in KEYS
    ]
    # A key that acts on training is left out of the footer while nothing trains (the app's
    # check_action); pressed anyway, it falls through to this one, which says why nothing happened.
    out += [
        Binding(k.key, f"not_now('{k.action_name}')", show=False) for k in KEYS if k.action_name in ACTS_ON_TRAINING
    ]
    out += [Binding("equals_sign", "steer_lr(2.0)", show=False)]  # + without shift
    out.append(Binding("ctrl+c", "quit_app", "Quit", show=False, priority=True))
    return out


def help_text() -> str:
    """The help screen's body."""
    lines = [f"  [b]{k.label}[/b]  {k.help}" for k in KEYS]
    return "[b]keys[/b] (training acts on them at the next batch boundary)\n" + "\n".join(lines)


def epilog_lines(width: int = 88) -> list[str]:
    """``--help``'s key list, wrapped at ``width``."""
    lines: list[str] = []
    for item in (f"{k.label} {k.brief}" for k in KEYS):
        if lines and len(lines[-1]) + 3 + len(item) <= width:
            lines[-1] += "   " + item
        else:
            lines.append("  " + item)
    return lines


def readme_table() -> str:
    """README's key table (Markdown)."""
    rows = [f"| `{k.label}` | {k.readme} |" for k in KEYS]
    return "\n".join(["| key | action |", "|---|---|", *rows])

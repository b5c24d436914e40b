"""Run header and progress pane: cheap text, updated between plot redraws."""

from __future__ import annotations

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from engine.run.events import Phase
from engine.run.wording import duration, model_phrase, percent, plural
from tui.format import pct
from tui.state import STATE_LABELS, RunState

STATE_STYLE: dict[str, str] = {
    Phase.TRAINING: "bold green",
    Phase.EVALUATING: "bold cyan",
    Phase.PAUSED: "bold yellow",
    Phase.FINISHED: "bold green",
    Phase.STOPPED: "bold yellow",
    Phase.FAILED: "bold red",
}


class RunHeader(Static):
    """Recipe, key hyper-parameters, data and run directory."""

    def show(self, state: RunState, attached: bool = False) -> None:
        c, s = state.config, state.started
        if not c or s is None:
            # A failure is told once, in full, by the progress pane: here only what kind it was.
            told = f"failed ({state.failed.error})" if state.failed is not None else state.message
            self.update(Text("cifar-tui · " + (told or "starting…"), style="bold"))
            return
        line1 = Text.assemble(
            ("cifar-tui ", "bold"),
            ("attached " if attached else "", "bold reverse"),
            (f"{c['recipe']} ", "bold magenta"),
            f"· {model_phrase(c)} "
            + (f"· {s.world_size} processes " if s.world_size > 1 else "")
            + f"· batch {c['batch_size']} · {c['optimizer']} lr {c['lr']:g}"
            + (f" x{state.lr_scale:.3g}" if state.lr_scale != 1.0 else "")  # steered: --lr times this
            + (f" m {c['momentum']:g}" if c["optimizer"] == "sgd" else "")
            + (f" wd {c['weight_decay']:g}" if c["weight_decay"] else "")
            + f" · {c['schedule']} · {plural(state.epochs or int(c['epochs']), 'epoch')}",  # as steered
        )
        line2 = Text(
            f"data {s.data_source}: {s.train_size:,} train / {s.test_size:,} test, {len(s.class_names)} classes "
            f"· loader {s.loader} · run {s.run_dir}",
            style="dim",
        )
        for line in (line1, line2):
            line.no_wrap = True
            line.overflow = "ellipsis"
        self.update(Group(line1, line2))


class ProgressPane(Static):
    """State, epoch and step bars, speed, elapsed and ETA."""

    _parts: tuple[int, int] = (0, 0)

    def show(self, state: RunState) -> None:
        label = STATE_LABELS.get(state.state, state.state)
        head = Text.assemble(
            ("● ", STATE_STYLE.get(state.state, "bold blue")), (label, STATE_STYLE.get(state.state, "bold"))
        )
        if state.message and state.state not in (Phase.TRAINING, Phase.FINISHED, Phase.FAILED):
            head.append(f"  {state.message}", style="dim")
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(width=13, no_wrap=True)
        grid.add_column(ratio=1)
        grid.add_column(width=6, justify="right", no_wrap=True)
        epochs = max(1, state.epochs)
        spe = max(1, state.steps_per_epoch)
        completed = state.finished is not None and state.finished.reason == "completed"
        step = spe if completed else state.step
        epoch_done = min(state.epoch + step / spe, epochs) if state.started else 0
        shown_epoch = min(state.epoch + 1, epochs)
        if completed and state.finished is not None:  # all of it, or ended early by a stop rule
            epoch_done = shown_epoch = state.finished.epochs_done
        grid.add_row(
            f"epoch {shown_epoch}/{epochs}",
            ProgressBar(epochs, epoch_done),
            percent(epoch_done / epochs, 0),
        )
        grid.add_row(f"step {step}/{spe}", ProgressBar(spe, step), percent(step / spe, 0))
        eta = state.eta_seconds()
        # Live: training time (pauses left out, as the ETA counts). Ended: the run's own total, as
        # the line below says it, so the two figures on screen never disagree.
        elapsed = state.finished.seconds if state.finished is not None else state.elapsed
        loss = "--" if state.loss is None else f"{state.loss:.3f}"
        lr = "--" if state.lr is None else f"{state.lr:.2e}"
        if state.lr_scale != 1.0:  # the effective LR, and the steered multiplier in it
            lr += f" (x{state.lr_scale:g})"
        stops = [f"early stop {state.early_stop}"] if state.early_stop else []
        stops += [f"target {100 * state.target_accuracy:g}%"] if state.target_accuracy else []
        stats = Text(
            f"{state.images_per_sec:,.0f} img/s · data wait {pct(state.data_wait, 0)}\n"
            f"loss {loss} · lr {lr}\n"
            f"ETA {duration(eta) if eta is not None else '--'} · elapsed {duration(elapsed)}"
            + (f"\nends on: {' · '.join(stops)}" if stops and not state.ended else "")
        )
        parts: list[object] = [head, grid, stats]
        lines = len(stats.plain.splitlines())
        if state.failed is not None:
            parts.append(Text(f"{state.failed.error}: {state.failed.message}", style="bold red"))
        elif state.finished is not None:
            f = state.finished
            why = f" ({f.cause})" if f.cause and f.reason == "completed" else ""  # a stop rule ended it
            parts.append(Text(f"{f.reason}{why} after {plural(f.epochs_done, 'epoch')} in {duration(f.seconds)} · "
                              f"test acc {pct(f.test_accuracy, 2)} · press q to quit", style="bold green"))  # fmt: skip
        # A layout pass costs more than the text itself: only when the number of lines changes.
        self.update(Group(*parts), layout=(len(parts), lines) != self._parts)  # type: ignore[arg-type]
        self._parts = (len(parts), lines)

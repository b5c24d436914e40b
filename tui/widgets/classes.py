"""Per-class accuracy (table with bars, best and worst highlighted) and the confusion matrix."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from engine.events import Evaluation

BAR_WIDTH = 12


def _bar(fraction: float, width: int = BAR_WIDTH) -> str:
    full = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * full + "·" * (width - full)


def per_class_table(evaluation: Evaluation | None) -> Table | Text:
    if evaluation is None:
        return Text("per-class accuracy appears after the first evaluation (press e to evaluate now)", style="dim")
    when = "final" if evaluation.reason == "final" else f"epoch {evaluation.epoch + 1}, step {evaluation.step}"
    table = Table(
        title=f"per-class accuracy · {100 * evaluation.accuracy:.2f}% overall · {when}",
        title_justify="left",
        box=None,
        padding=(0, 1),
        expand=True,
    )
    table.add_column("class", no_wrap=True, ratio=1)
    table.add_column("acc", justify="right", no_wrap=True, width=6)
    table.add_column("", no_wrap=True, width=BAR_WIDTH)
    best = max(evaluation.per_class)
    worst = min(evaluation.per_class)
    for name, acc in zip(evaluation.class_names, evaluation.per_class):
        style = "green" if acc == best else "red" if acc == worst else ""
        table.add_row(Text(name, style=style), Text(f"{100 * acc:.1f}", style=style), Text(_bar(acc), style=style or "blue"))
    return table


def confusion_table(evaluation: Evaluation | None) -> Table | Text:
    if evaluation is None:
        return Text("no evaluation yet: press e to evaluate now", style="dim")
    names = evaluation.class_names
    short = [n[:5] for n in names]
    table = Table(title="confusion matrix (rows: true class, columns: predicted)", box=None, padding=(0, 1))
    table.add_column("true \\ pred", no_wrap=True)
    for s in short:
        table.add_column(s, justify="right", no_wrap=True)
    for name, row in zip(names, evaluation.confusion):
        total = max(1, sum(row))
        cells = []
        for j, count in enumerate(row):
            share = count / total
            on_diag = names[j] == name
            style = "bold green" if on_diag else ("bold red" if share >= 0.2 else "red" if share >= 0.05 else "dim")
            cells.append(Text(str(count), style=style))
        table.add_row(name, *cells)
    return table


class ClassesPane(Static):
    def show(self, evaluation: Evaluation | None) -> None:
        self.update(per_class_table(evaluation))

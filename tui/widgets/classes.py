"""Per-class accuracy (table with bars, best and worst highlighted) and the confusion matrix."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from engine.run.events import Evaluation
from engine.run.wording import per_class_rows, percent

BAR_WIDTH = 12


def _bar(fraction: float, width: int = BAR_WIDTH) -> str:
    full = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * full + "·" * (width - full)


def per_class_table(evaluation: Evaluation | None) -> Table | Text:
    if evaluation is None:
        return Text("per-class accuracy appears after the first evaluation (press e to evaluate now)", style="dim")
    when = "final" if evaluation.reason == "final" else f"epoch {evaluation.epoch + 1} step {evaluation.step}"
    table = Table(
        title=f"{percent(evaluation.accuracy)} overall · {when}",
        title_justify="left",
        box=None,
        padding=(0, 1),
        expand=True,
    )
    table.add_column("class", no_wrap=True, ratio=1)
    table.add_column("acc", justify="right", no_wrap=True, width=6)
    table.add_column("", no_wrap=True, width=BAR_WIDTH)
    for name, acc, mark in per_class_rows(evaluation):
        style = {"best": "green", "worst": "red"}.get(mark, "")
        table.add_row(
            Text(name, style=style), Text(f"{100 * acc:.1f}", style=style), Text(_bar(acc), style=style or "blue")
        )
    return table


def confusion_table(evaluation: Evaluation | None) -> Text:
    """Counts as fixed-width text (rows: true class, columns: predicted); big off-diagonal shares in red."""
    if evaluation is None:
        return Text("no evaluation yet: press e to evaluate now", style="dim")
    names = evaluation.class_names
    width = max(6, *(len(str(c)) + 1 for row in evaluation.confusion for c in row))
    label = max(11, *(len(n) for n in names)) + 1
    out = Text("confusion matrix (rows: true class, columns: predicted)\n", style="bold")
    corner = "true \\ pred"
    out.append(f"{corner:<{label}}" + "".join(f"{n[: width - 1]:>{width}}" for n in names) + "\n", style="dim")
    for i, (name, row) in enumerate(zip(names, evaluation.confusion)):
        total = max(1, sum(row))
        out.append(f"{name:<{label}}")
        for j, count in enumerate(row):
            share = count / total
            style = "bold green" if i == j else ("bold red" if share >= 0.2 else "red" if share >= 0.05 else "dim")
            out.append(f"{count:>{width}}", style=style)
        out.append("\n")
    return out


class ClassesPane(Static):
    def show(self, evaluation: Evaluation | None) -> None:
        self.update(per_class_table(evaluation))

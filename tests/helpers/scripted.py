"""A scripted stand-in for the training process: deterministic events for snapshot tests."""

from __future__ import annotations

import time
from collections.abc import Iterator

from engine.run import events as ev
from engine.run.config import TrainConfig, from_recipe
from engine.run.steering import SteerAct
from engine.session.base import Session

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
T0 = 1_800_000_000.0


def run_started(cfg: TrainConfig) -> ev.RunStarted:
    return ev.RunStarted(
        run_dir="runs/20261127-120000-tutorial-cifar10", config=cfg.to_dict(), device="cpu",
        device_name="Example CPU @ 3.0GHz", torch_version="2.14.1", cuda_version="", num_threads=2,
        train_size=50000, test_size=10000, class_names=CLASSES, steps_per_epoch=782, loader="dataloader",
        data_source="CIFAR-10 (torchvision, ~/.cache/cifar-tui/data)", t=T0,
    )  # fmt: skip


def evaluation(epoch: int, step: int, reason: str = "epoch") -> ev.Evaluation:
    per_class = [min(0.98, 0.40 + 0.05 * epoch + 0.04 * ((i * 7) % 5) - 0.02 * (i == 3)) for i in range(10)]
    confusion = [[int(1000 * per_class[i]) if i == j else (1000 - int(1000 * per_class[i])) // 9 for j in range(10)]
                 for i in range(10)]  # fmt: skip
    acc = sum(per_class) / 10
    return ev.Evaluation(epoch=epoch, step=step, global_step=epoch * 782 + step, loss=1.6 - 0.1 * epoch,
                         accuracy=acc, per_class=per_class, confusion=confusion, class_names=CLASSES,
                         seconds=3.0, reason=reason, t=T0)  # fmt: skip


def script(cfg: TrainConfig, epochs_done: int, end: str = "") -> list[ev.Event]:
    """A run of the tutorial recipe: ``epochs_done`` full epochs, then some of the next, then ``end``."""
    out: list[ev.Event] = [ev.Status("loading_data", "loading cifar10", t=T0), run_started(cfg),
                           ev.Status("training", "", t=T0)]  # fmt: skip
    step = 0
    for epoch in range(cfg.epochs):
        last = 782 if epoch < epochs_done else 400
        for s in range(20, last + 1, 20 if epoch < epochs_done else 40):
            step = epoch * 782 + s
            loss = 2.3 * (0.6 ** (step / 782)) + 0.05 * ((s * 13) % 7) / 7
            out.append(ev.Progress(epoch=epoch, epochs=cfg.epochs, step=s, steps_per_epoch=782, global_step=step,
                                   loss=loss, lr=cfg.lr, images_per_sec=1480.0, data_wait=0.62,
                                   elapsed=step / 23.0, t=T0))  # fmt: skip
        if epoch >= epochs_done:
            break
        result = evaluation(epoch, 782)
        out.append(result)
        out.append(ev.EpochEnd(epoch=epoch + 1, epochs=cfg.epochs, train_loss=1.5 - 0.12 * epoch,
                               train_accuracy=0.45 + 0.05 * epoch, test_loss=result.loss, test_accuracy=result.accuracy,
                               images_per_sec=1480.0, seconds=34.0, eval_seconds=3.0, lr=cfg.lr, t=T0))  # fmt: skip
    if end == "paused":
        out += [ev.Paused(step, t=T0), ev.Status("paused", f"paused at step {step}", t=T0)]
    elif end == "finished":
        final = evaluation(epochs_done - 1, 782, "final")
        out += [final, ev.Status("finished", "", t=T0),
                ev.Finished("completed", epochs_done, step, final.accuracy, final.accuracy, 412.0,
                            "runs/20261127-120000-tutorial-cifar10/checkpoints/last.pt", t=T0)]  # fmt: skip
    return out


class ScriptedSession(Session):
    """Plays a list of events, then stays 'alive' (unless the script ended the run)."""

    def __init__(self, events: list[ev.Event]) -> None:
        self.script = events
        self.commands: list[str] = []
        self.steered: list[SteerAct] = []
        self.closed = False

    @property
    def pid(self) -> int | None:
        return None

    def start(self) -> None:
        pass

    def events(self, poll: float = 0.2) -> Iterator[ev.Event | None]:
        yield from self.script
        # An earlier session's end (a resumed run's history) does not end this one.
        ends = [i for i, e in enumerate(self.script) if isinstance(e, ev.Finished | ev.Failed)]
        starts = [i for i, e in enumerate(self.script) if isinstance(e, ev.RunStarted)]
        ended = bool(ends) and (not starts or ends[-1] > starts[-1])
        while not self.closed and not ended:
            time.sleep(0.05)
            yield None

    def send(self, command: str, cause: str = "", steer: SteerAct | None = None) -> bool:
        self.commands.append(command)
        if steer is not None:
            self.steered.append(steer)
        return True

    def close(self, timeout: float = 15.0) -> None:
        self.closed = True

    def alive(self) -> bool:
        return not self.closed


def tutorial_config() -> TrainConfig:
    return from_recipe("tutorial")

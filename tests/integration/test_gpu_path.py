"""The training loop's GPU code path, driven on the CPU: no host-device sync between progress
reports, and torch.compile compiles once for training and once for evaluation, never again."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision

import engine.train.loop_parts as loop_parts
import engine.train.setup as train_setup
import engine.train.trainer as trainer_module
from engine.run import events as ev
from engine.train.loop import TrainLoop
from engine.train.trainer import Trainer
from tests.helpers.common import Recorder, tiny_config

#: Tensor methods that make the host wait for the device when the tensor lives on a GPU.
SYNCING = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


@pytest.fixture
def gpu_branch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], None]]:
    """Make the loop take its GPU branch (or, for the control, its CPU branch)."""
    choice = {"every_step": False}
    original = TrainLoop.train

    def train(self: TrainLoop, stats: Any) -> None:
        self.check_every_step = choice["every_step"]
        original(self, stats)

    monkeypatch.setattr(TrainLoop, "train", train)

    def set_every_step(value: bool) -> None:
        choice["every_step"] = value

    yield set_every_step


def count_syncs(monkeypatch: pytest.MonkeyPatch, trainer: Trainer) -> Counter[int]:
    """Count the syncing reads by the global step the trainer is at when they happen."""
    counts: Counter[int] = Counter()
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            counts[trainer.state.global_step] += 1
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: object) -> tuple[Counter[int], Recorder]:
    # Reports only at each epoch's end: progress at most once in 1000 s, the running loss every 1000 steps.
    cfg = tiny_config(tmp_path, epochs=2, progress_hz=0.001, log_every=1000, **overrides)
    recorder = Recorder()
    trainer = Trainer(cfg, recorder)
    counts = count_syncs(monkeypatch, trainer)
    assert trainer.run().reason == "completed"
    monkeypatch.undo()
    return counts, recorder


def test_gpu_branch_reads_the_device_only_at_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu_branch: Callable[[bool], None]
) -> None:
    # The fast recipe's parts on the cheap ImageNet stem: triangular schedule, reflect padding,
    # Cutout, alternating flips, EMA, TTA.
    counts, recorder = _run(
        tmp_path / "gpu", monkeypatch, recipe="fast", stem="imagenet", batch_size=16, ema=0.9, flip="alternate"
    )
    reports = {p.global_step for p in recorder.of(ev.Progress)}
    assert reports == {8, 16}  # 128 images, batch 16: the last step of each epoch
    assert counts[8] > 0 and counts[16] > 0  # the reports read (loss, sums), evaluation and saving too
    between = {step: n for step, n in counts.items() if step not in reports and step != 0}
    assert between == {}, f"host syncs between reports, by step: {between}"


def test_cpu_branch_reads_the_loss_every_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu_branch: Callable[[bool], None]
) -> None:
    """The control: the same counting sees the CPU branch's per-step loss check."""
    gpu_branch(True)
    counts, _ = _run(tmp_path, monkeypatch)
    assert all(counts[step] >= 1 for step in range(1, 16))


def test_compile_compiles_once_for_training_and_once_for_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiles: list[tuple[int, ...]] = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        compiles.append(tuple(example_inputs[0].shape) if example_inputs else ())
        return gm.forward  # run the traced graph eagerly: counts compilations without a C compiler

    torch._dynamo.reset()
    monkeypatch.setattr(trainer_module, "can_compile", lambda device: True)
    monkeypatch.setattr(
        train_setup, "compile_model", lambda model: torch.compile(model, backend=counting_backend, dynamic=False)
    )
    recorder = Recorder()
    # 100 training images at batch 32 (a ragged batch of 4, dropped), 50 test images at batch 32
    # (a last batch of 18, padded), flip TTA: two graphs, then nothing new in epoch 2.
    cfg = tiny_config(tmp_path, epochs=2, train_limit=100, test_limit=50, batch_size=32, eval_batch_size=32, tta=True,
                      compile=True)  # fmt: skip
    finished = Trainer(cfg, recorder).run()
    torch._dynamo.reset()
    assert finished.reason == "completed"
    assert len(compiles) == 2, f"compiled {len(compiles)} times: {compiles}"
    epochs = recorder.of(ev.EpochEnd)
    assert epochs[0].compile_seconds > 0 and epochs[1].compile_seconds == 0
    assert [p.step for p in recorder.of(ev.Progress) if p.epoch == 0][-1] == 3  # the ragged batch is dropped
    states = [s.state for s in recorder.of(ev.Status)]
    assert states.count("compiling") == 2
    assert sum("compiled in" in e.message for e in recorder.of(ev.Log)) == 2
    assert sum(sum(row) for row in recorder.of(ev.Evaluation)[-1].confusion) == 50  # padding never counted


def test_the_finiteness_check_before_a_save_reads_the_device_once(monkeypatch: pytest.MonkeyPatch) -> None:
    model = torchvision.models.resnet18(num_classes=10)
    reads: list[str] = []
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *args: Any, __name: str = name, __original: Any = original, **kw: Any) -> Any:
            reads.append(__name)
            return __original(self, *args, **kw)

        monkeypatch.setattr(torch.Tensor, name, counted)
    assert loop_parts.all_finite(model) is True
    assert len(reads) == 1, reads  # not one per parameter (62 of them, and BatchNorm statistics)
    with torch.no_grad():
        model.layer4[1].bn2.running_var[3] = float("nan")
    assert loop_parts.all_finite(model) is False

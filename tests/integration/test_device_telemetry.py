"""GPU telemetry: the dashboard shows the card the trainer really uses, read through one NVML session."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from engine.run.events import normal_uuid
from tests.helpers.common import screen_text
from tests.helpers.scripted import ScriptedSession, script, tutorial_config
from tests.helpers.waiting import app_until
from tui.app import CifarTui
from tui.telemetry import NvmlReader

GIB = 2**30
# Two cards: NVML index 0 is the idle one; the trainer's CUDA_VISIBLE_DEVICES=1 makes card 1 its cuda:0.
# The processes on each card, (pid, bytes): 999 is someone else's job sharing card 1.
CARDS = [
    {"uuid": "GPU-aaaa1111-0000-0000-0000-000000000000", "name": "Card Zero", "used": 1 * GIB, "util": 0,
     "procs": [(101, 1 * GIB)]},
    {"uuid": "GPU-BBBB2222-0000-0000-0000-000000000000", "name": "Card One", "used": 7 * GIB, "util": 97,
     "procs": [(202, 3 * GIB), (999, 4 * GIB)]},
]  # fmt: skip


def fake_nvml(calls: Counter[str]) -> Any:
    def counted(name: str, result: Any = None) -> Any:
        def call(*args: Any) -> Any:
            calls[name] += 1
            return result(*args) if callable(result) else result

        return call

    return SimpleNamespace(
        NVML_TEMPERATURE_GPU=0,
        nvmlInit=counted("init"),
        nvmlShutdown=counted("shutdown"),
        nvmlDeviceGetCount=counted("count", len(CARDS)),
        nvmlDeviceGetHandleByIndex=counted("handle", lambda i: CARDS[i]),
        nvmlDeviceGetUUID=lambda h: h["uuid"].encode(),  # older bindings return bytes
        nvmlDeviceGetName=lambda h: h["name"],
        nvmlDeviceGetMemoryInfo=counted("memory", lambda h: SimpleNamespace(used=h["used"], total=80 * GIB)),
        nvmlDeviceGetComputeRunningProcesses=lambda h: [
            SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in h["procs"]
        ],
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=h["util"]),
        nvmlDeviceGetTemperature=lambda h, _kind: 61,
        nvmlDeviceGetPowerUsage=lambda h: 412_000,
    )


def test_the_reader_samples_the_card_named_by_uuid_and_initialises_nvml_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: Counter[str] = Counter()
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(calls))
    reader = NvmlReader()
    for _ in range(3):
        gpus, error = reader.read((), [normal_uuid(CARDS[1]["uuid"])])
        assert error == "" and [g.name for g in gpus] == ["Card One"] and gpus[0].used == 7 * GIB
    assert calls["init"] == 1 and calls["shutdown"] == 0
    # Without UUIDs (a run written by an older version) the trainer's device index is the card's.
    assert [g.name for g in reader.read((), [], index=0)[0]] == ["Card Zero"]
    # A UUID NVML does not know (another host's run, attached over a shared disk): said, not guessed.
    assert reader.read((), ["cccc"]) == ([], "the trainer's GPU is not visible to NVML here")
    reader.close()
    assert calls["shutdown"] == 1


def test_a_machine_without_nvml_says_so_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    reader = NvmlReader()
    assert reader.read((), ["bbbb"]) == ([], "nvidia-ml-py not installed")


async def test_dashboard_shows_the_gpu_the_trainer_uses_not_nvml_index_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: Counter[str] = Counter()
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(calls))
    cfg = tutorial_config()
    events = script(cfg, 1)
    started = next(i for i, e in enumerate(events) if e.kind == "run_started")
    events[started] = replace(events[started], device="cuda:0", device_name="Card One",  # type: ignore[type-var]
                              gpu_uuids=[normal_uuid(CARDS[1]["uuid"])])  # fmt: skip
    app = CifarTui(cfg, lambda _cfg: ScriptedSession(events), telemetry_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await app_until(pilot, lambda: "7.0 GiB / 80.0 GiB card" in screen_text(app))
        await app_until(pilot, lambda: calls["memory"] >= 3)  # several readings...
        assert "util 97%" in screen_text(app) and "1.0 GiB" not in screen_text(app)
        await pilot.press("q")
    assert calls["init"] == 1 and calls["shutdown"] == 1  # ...through one NVML session, closed on exit


def test_the_trainer_names_its_gpu_by_the_uuid_nvml_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from engine.train.device import gpu_uuids

    assert gpu_uuids(torch.device("cpu")) == []
    props = SimpleNamespace(uuid="BBBB2222-0000-0000-0000-000000000000")  # torch prints it without GPU-
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _device: props)
    assert gpu_uuids(torch.device("cuda", 0)) == [normal_uuid(CARDS[1]["uuid"])]


async def test_a_data_parallel_run_shows_every_gpu_and_its_process_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(Counter()))
    cfg = tutorial_config()
    events = script(cfg, 1)
    started = next(i for i, e in enumerate(events) if e.kind == "run_started")
    events[started] = replace(events[started], device="cuda:0", world_size=2,  # type: ignore[type-var]
                              gpu_uuids=[normal_uuid(c["uuid"]) for c in CARDS], pids=[101, 202])  # fmt: skip
    app = CifarTui(cfg, lambda _cfg: ScriptedSession(events), telemetry_s=0.1)
    async with app.run_test(size=(160, 40)) as pilot:
        # Each card: the memory of this run's rank on it, not of the other job sharing card 1.
        shown = ("Card Zero mem 1.0 GiB this run · 1.0 GiB / 80.0 GiB card",
                 "Card One mem 3.0 GiB this run · 7.0 GiB / 80.0 GiB card", "· 2 processes ·")  # fmt: skip
        await app_until(pilot, lambda: all(part in screen_text(app) for part in shown))
        await pilot.press("q")


def test_cpu_and_memory_count_every_process_of_the_run() -> None:
    """A launcher that only waits (torchrun) over busy ranks: the pane must not say 0% CPU."""
    import subprocess

    from tests.helpers.waiting import wait_until
    from tui.telemetry import sample_device

    busy = f"{sys.executable} -c 'while True: pass'"
    launcher = subprocess.Popen(["sh", "-c", f"{busy} & {busy} & wait"])
    try:
        import psutil

        wait_until(lambda: len(psutil.Process(launcher.pid).children()) == 2, 30, "two busy ranks")
        alone = psutil.Process(launcher.pid)
        sample = sample_device(launcher.pid, None, [])
        assert sample.process_cpu is not None and sample.process_cpu > 20  # the waiting shell alone is ~0%
        assert sample.process_rss is not None and sample.process_rss > alone.memory_info().rss
    finally:
        for child in psutil.Process(launcher.pid).children():
            child.kill()
        launcher.kill()
        launcher.wait()

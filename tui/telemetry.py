"""Telemetry of the trainer's device: GPU facts from NVML, the trainer process's CPU, memory and
threads from psutil. Sampled in a worker thread on its own timer (the app's), so a slow NVML call
never blocks drawing; the device pane (``tui/widgets/device.py``) only shows a sample."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from engine.run.events import normal_uuid


@dataclass
class GpuSample:
    name: str
    used: int
    total: int
    process_used: int | None
    util: int | None
    temperature: int | None
    power_w: float | None
    uuid: str = ""


@dataclass
class DeviceSample:
    gpus: list[GpuSample] = field(default_factory=list)
    nvml_error: str = ""
    process_rss: int | None = None
    process_cpu: float | None = None
    process_threads: int | None = None


class NvmlReader:
    """GPU telemetry from NVML, initialised once (the first reading) and shut down on ``close``.

    ``read`` samples the GPUs the trainer named by UUID, so that a trainer started with
    ``CUDA_VISIBLE_DEVICES=3`` (its ``cuda:0``) is shown as the card it really uses; without
    UUIDs (an older run) the trainer's device index is taken as the card's.
    """

    def __init__(self) -> None:
        self._nvml: Any = None
        self._error = ""
        self._uuids: list[str] = []  # NVML index -> normalised UUID

    def _open(self) -> Any:
        if self._nvml is not None or self._error:
            return self._nvml
        try:
            import pynvml
        except ImportError:
            self._error = "nvidia-ml-py not installed"
            return None
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._uuids = [normal_uuid(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i)))
                           for i in range(count)]  # fmt: skip
        except Exception as exc:
            self._error = f"NVML unavailable ({type(exc).__name__})"
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()
            return None
        self._nvml = pynvml
        return pynvml

    def read(self, pids: Collection[int], uuids: list[str], index: int = 0) -> tuple[list[GpuSample], str]:
        """One reading of the trainer's GPUs, the memory of processes ``pids`` counted as this run's;
        ([], reason) where NVML is missing (CPU machines)."""
        nvml = self._open()
        if nvml is None:
            return [], self._error
        wanted = [self._uuids.index(u) for u in map(normal_uuid, uuids) if u in self._uuids]
        if not uuids and self._uuids:
            wanted = [min(index, len(self._uuids) - 1)]
        if uuids and not wanted:
            return [], "the trainer's GPU is not visible to NVML here"
        gpus = []
        for i in wanted:
            with contextlib.suppress(Exception):
                gpus.append(_read_one(nvml, nvml.nvmlDeviceGetHandleByIndex(i), self._uuids[i], pids))
        return gpus, ""

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None


def _read_one(nvml: Any, h: Any, uuid: str, pids: Collection[int]) -> GpuSample:
    name = nvml.nvmlDeviceGetName(h)
    mem = nvml.nvmlDeviceGetMemoryInfo(h)
    proc_used = None
    with contextlib.suppress(Exception):
        mine = [int(p.usedGpuMemory or 0) for p in nvml.nvmlDeviceGetComputeRunningProcesses(h) if p.pid in pids]
        proc_used = sum(mine) if mine else None
    util = temp = power = None
    with contextlib.suppress(Exception):
        util = int(nvml.nvmlDeviceGetUtilizationRates(h).gpu)
    with contextlib.suppress(Exception):
        temp = int(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
    with contextlib.suppress(Exception):
        power = nvml.nvmlDeviceGetPowerUsage(h) / 1000.0
    name = name.decode() if isinstance(name, bytes) else str(name)
    return GpuSample(name, int(mem.used), int(mem.total), proc_used, util, temp, power, uuid)


def sample_device(pid: int | None, gpus: NvmlReader | None, uuids: list[str], index: int = 0,
                  gpu_pids: Collection[int] = ()) -> DeviceSample:  # fmt: skip
    """Process facts of the trainer ``pid``, and its GPUs when ``gpus`` (a reader) is given, where the
    memory of ``pid`` and ``gpu_pids`` (the other ranks of a data-parallel run) is this run's. CPU,
    memory and threads are summed over the run's processes: the trainer, the other ranks and
    their children (data-loader workers), so a 2-process run shows both ranks at work."""
    sample = DeviceSample()
    if gpus is not None:
        sample.gpus, sample.nvml_error = gpus.read({*gpu_pids, *([pid] if pid is not None else [])}, uuids, index)
    if pid is not None:
        with contextlib.suppress(Exception):
            procs = _run_processes([pid, *gpu_pids])
            for proc in procs:
                with contextlib.suppress(Exception):
                    proc.cpu_percent(None)  # starts the measurement (not inside oneshot(): it caches times)
            time.sleep(0.2)
            cpu = rss = threads = 0
            for proc in procs:
                with contextlib.suppress(Exception):
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                    threads += proc.num_threads()
            sample.process_cpu, sample.process_rss, sample.process_threads = float(cpu), rss, threads
    return sample


def _run_processes(pids: list[int]) -> list[Any]:
    """The live processes among ``pids`` and all their descendants, each once."""
    import psutil

    found: dict[int, Any] = {}
    for pid in pids:
        with contextlib.suppress(Exception):
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                found.setdefault(p.pid, p)
    return list(found.values())

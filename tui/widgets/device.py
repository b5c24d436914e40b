"""Device pane: GPU telemetry from NVML, or CPU model, threads and process memory.

Sampling runs in a thread on its own timer (see the app), so a slow NVML call never
blocks drawing; this module only formats what was sampled.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from rich.text import Text
from textual.widgets import Static

from tui.format import mib


@dataclass
class GpuSample:
    name: str
    used: int
    total: int
    process_used: int | None
    util: int | None
    temperature: int | None
    power_w: float | None


@dataclass
class DeviceSample:
    gpus: list[GpuSample] = field(default_factory=list)
    nvml_error: str = ""
    process_rss: int | None = None
    process_cpu: float | None = None
    process_threads: int | None = None


def sample_nvml(pid: int | None) -> tuple[list[GpuSample], str]:
    """One reading of every GPU; ([], reason) where NVML is missing (CPU machines)."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return [], f"NVML unavailable ({type(exc).__name__})"
    gpus = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            proc_used = None
            with contextlib.suppress(Exception):
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                    if pid is not None and p.pid == pid:
                        proc_used = int(p.usedGpuMemory or 0)
            util = temp = power = None
            with contextlib.suppress(Exception):
                util = int(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            with contextlib.suppress(Exception):
                temp = int(pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))
            with contextlib.suppress(Exception):
                power = pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0
            gpus.append(GpuSample(str(name), int(mem.used), int(mem.total), proc_used, util, temp, power))
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return gpus, ""


def sample_device(pid: int | None, want_gpu: bool) -> DeviceSample:
    sample = DeviceSample()
    if want_gpu:
        sample.gpus, sample.nvml_error = sample_nvml(pid)
    if pid is not None:
        with contextlib.suppress(Exception):
            import psutil

            proc = psutil.Process(pid)
            sample.process_cpu = proc.cpu_percent(interval=0.2)  # not inside oneshot(): it caches cpu times
            sample.process_rss = proc.memory_info().rss
            sample.process_threads = proc.num_threads()
    return sample


class DevicePane(Static):
    def show(self, device: str, device_name: str, torch_version: str, cuda_version: str, threads: int,
             sample: DeviceSample | None) -> None:  # fmt: skip
        if not device:
            self.update(Text("device: waiting for the training process…", style="dim"))
            return
        t = Text()
        t.append(f"{device_name or device}", style="bold")
        t.append(f"  ({device})\n", style="dim")
        versions = f"torch {torch_version}" + (f" · CUDA {cuda_version}" if cuda_version else "")
        if sample and sample.gpus and device.startswith("cuda"):
            index = int(device.split(":")[1]) if ":" in device else 0
            g = sample.gpus[min(index, len(sample.gpus) - 1)]
            mine = f"{mib(g.process_used)} this run · " if g.process_used is not None else ""
            t.append(f"mem {mine}{mib(g.used)} / {mib(g.total)} card\n")
            util = "--" if g.util is None else f"{g.util}%"
            temp = "--" if g.temperature is None else f"{g.temperature}°C"
            power = "--" if g.power_w is None else f"{g.power_w:.0f} W"
            t.append(f"util {util} · {temp} · {power}\n")
        else:
            cpu = "--" if not sample or sample.process_cpu is None else f"{sample.process_cpu:.0f}%"
            rss = "--" if not sample or sample.process_rss is None else mib(sample.process_rss)
            t.append(f"{threads} torch threads · trainer CPU {cpu} · RAM {rss}\n")
            if device.startswith("cuda") and sample and sample.nvml_error:
                t.append(f"GPU telemetry: {sample.nvml_error}\n", style="dim")
        t.append(versions, style="dim")
        self.update(t)

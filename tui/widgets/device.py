"""Device pane: GPU memory, utilisation, temperature and power, or the trainer's CPU, threads and
memory, as sampled by ``tui/telemetry.py``."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.run.wording import plural
from tui.format import mib
from tui.telemetry import DeviceSample


class DevicePane(Static):
    compact = False
    """One line only (a short terminal): the figures that move, without names and versions."""

    def show(self, device: str, device_name: str, torch_version: str, cuda_version: str, threads: int,
             sample: DeviceSample | None) -> None:  # fmt: skip
        if not device:
            self.update(Text("device: waiting for the training process…", style="dim"))
            return
        if self.compact:
            self.update(self._line(device, sample))
            return
        t = Text()
        t.append(f"{device_name or device}", style="bold")
        t.append(f"  ({device})\n", style="dim")
        # A CUDA build on a machine without a GPU says what it could use, not what it is using.
        on_gpu = device.startswith("cuda")
        cuda = (
            (f" · CUDA {cuda_version}" if on_gpu else f" · CUDA {cuda_version} build, no GPU") if cuda_version else ""
        )
        versions = f"torch {torch_version}{cuda}"
        if sample and sample.gpus and device.startswith("cuda"):
            for g in sample.gpus:
                if len(sample.gpus) > 1:
                    t.append(f"{g.name} ", style="bold")
                mine = f"{mib(g.process_used)} this run · " if g.process_used is not None else ""
                t.append(f"mem {mine}{mib(g.used)} / {mib(g.total)} card\n")
                util = "--" if g.util is None else f"{g.util}%"
                temp = "--" if g.temperature is None else f"{g.temperature}°C"
                power = "--" if g.power_w is None else f"{g.power_w:.0f} W"
                t.append(f"util {util} · {temp} · {power}\n")
        else:
            cpu = "--" if not sample or sample.process_cpu is None else f"{sample.process_cpu:.0f}%"
            rss = "--" if not sample or sample.process_rss is None else mib(sample.process_rss)
            t.append(f"{plural(threads, 'torch thread')} · trainer CPU {cpu} · RAM {rss}\n")
            if device.startswith("cuda") and sample and sample.nvml_error:
                t.append(f"GPU telemetry: {sample.nvml_error}\n", style="dim")
        t.append(versions, style="dim")
        self.update(t)

    @staticmethod
    def _line(device: str, sample: DeviceSample | None) -> Text:
        if sample and sample.gpus and device.startswith("cuda"):
            g = sample.gpus[0]
            util = "--" if g.util is None else f"{g.util}%"
            more = f" (+{len(sample.gpus) - 1} GPUs)" if len(sample.gpus) > 1 else ""
            return Text(
                f"{device} util {util} · mem {mib(g.used)}/{mib(g.total)}{more}", no_wrap=True, overflow="ellipsis"
            )
        cpu = "--" if not sample or sample.process_cpu is None else f"{sample.process_cpu:.0f}%"
        rss = "--" if not sample or sample.process_rss is None else mib(sample.process_rss)
        return Text(f"{device} · CPU {cpu} · RAM {rss}", no_wrap=True, overflow="ellipsis")

"""The GPU benchmark behind bench/gpu.sh: on the JPEG CIFAR-10 copy, the tutorial's own loop and
the `tutorial` recipe on both loaders for 2 epochs, `fast` to completion with 3 seeds (mean and
spread), `fast` under the dashboard in a real pseudo-terminal (its cost: the images/s ratio),
and `fast95` if the time budget allows. Prints one table row per run, then the summary lines
that docs/benchmarks.md quotes. Needs torch; textual only for the dashboard run (skipped, and
said, without it).

    python bench/gpu_run.py [--smoke] [--budget 470] [--device auto] [--compile]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import pty
import select
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.common import demo_image_folder, machine, unpack_cifar_jpeg  # noqa: E402
from bench.tutorial_loop import tutorial_loop  # noqa: E402
from engine.run import events as ev  # noqa: E402
from engine.run.config import from_recipe  # noqa: E402
from engine.run.rundir import read_events  # noqa: E402
from engine.train.trainer import Trainer  # noqa: E402

Row = dict[str, Any]


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def row_from_events(name: str, events: list[ev.Event], wall: float, peak: float) -> Row:
    """One table row from a run's events: the wall time split and the steady training speed."""
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    epochs = [e for e in events if isinstance(e, ev.EpochEnd)]
    finished = next((e for e in events if isinstance(e, ev.Finished)), None)
    return {
        "run": name,
        "loader": started.loader,
        "epochs": len(epochs),
        "wall": wall,
        "load": started.t - events[0].t,  # data + model, up to the first step
        "compile": sum(e.compile_seconds for e in epochs),
        "train": sum(e.seconds for e in epochs),
        "eval": sum(e.eval_seconds for e in epochs),
        # The first epoch warms up cuDNN's autotuner and the allocator: the median of the others.
        "img_s": statistics.median(e.images_per_sec for e in epochs[1:] or epochs),
        "acc": (finished.test_accuracy if finished else None) or 0.0,
        "peak": peak,
    }


def engine_run(name: str, run_dir: Path, **options: Any) -> Row:
    """A recipe headless in this process, as `cifar-tui --headless` runs it."""
    reset_peak()
    seen: list[ev.Event] = []
    began = time.perf_counter()
    Trainer(from_recipe(run_dir=str(run_dir), **options), seen.append).run()
    return row_from_events(name, seen, time.perf_counter() - began, peak_gib())


def lr_find_note(run_dir: Path, **options: Any) -> str:
    """The learning-rate finder alone on a recipe: its steps, seconds and suggestion."""
    seen: list[ev.Event] = []
    cfg = from_recipe(run_dir=str(run_dir), **{**options, "lr_find": "only"})
    Trainer(cfg, seen.append).run()
    found = next(e for e in seen if isinstance(e, ev.LrFound))
    valley = f"valley {found.valley:.2e}" if found.valley is not None else "no suggestion"
    return f"{len(found.lrs)} steps in {found.seconds:.1f} s, {valley} (the recipe's lr {cfg.lr:g})"


def sweep_note(folder: Path, options: dict[str, Any]) -> str:
    """Two one-epoch trials of ``cifar-tui sweep`` on the recipe, forked from the sweep's fork
    server (each trial initialises its own GPU after the fork): how many completed, their best."""
    import subprocess

    fixed = {**{k: v for k, v in options.items() if k != "lr"}, "epochs": 1}  # (lr is swept)
    done = subprocess.run([sys.executable, "-m", "tui.cli", "sweep", "bench", "--runs-root", str(folder), "--headless",
                           "--trials", "2", "--pruner", "none", "--space", "lr=choice:0.05,0.1", *cli_args(fixed)],
                          capture_output=True, text=True, env=child_env())  # fmt: skip
    lines = [line.strip() for line in done.stdout.splitlines() if line.startswith("  trial ")]
    if done.returncode != 0 or len(lines) != 2:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        return f"failed (exit {done.returncode}): {last[0][:200]}"
    completed = sum(" completed " in line for line in lines)
    return f"{completed} of 2 forked trials completed; " + "; ".join(line.split(" | ")[0] for line in lines)


def seed_run(name: str, root: Path, epochs: int, device: str) -> Row:
    reset_peak()
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device
    )
    result = tutorial_loop(root, epochs, dev, say=lambda _line: None)
    return {"run": name, "loader": "tutorial's own loop", "compile": 0.0, "peak": peak_gib(), **result}


def dashboard_run(name: str, run_dir: Path, args: list[str]) -> Row | str:
    """The same recipe under the dashboard in a 120x40 pseudo-terminal whose output is drained as
    a terminal would; the dashboard quits by itself when training ends (``q`` sent then)."""
    try:
        import textual  # noqa: F401
    except ImportError:
        return "skipped: textual is not installed here (carry its wheels: docs/benchmarks.md)"
    began = time.perf_counter()
    pid, master = pty.fork()
    if pid == 0:
        with contextlib.suppress(BaseException):
            env = {**child_env(), "TERM": "xterm-256color"}
            os.execvpe(sys.executable, [sys.executable, "-m", "tui.cli", *args, "--run-dir", str(run_dir)], env)
        os._exit(127)
    import fcntl
    import termios

    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    sent_quit = float("-inf")  # when q was last sent
    screen = b""  # the terminal's last output: says why, if the app dies
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            screen = (screen + chunk)[-4096:]
        # q once the run has ended, and again every 5 s: a q that beats the app to the run's end
        # opens the quit dialog (training still looked live), which a second q answers.
        if time.perf_counter() - sent_quit > 5 and any(isinstance(e, ev.Finished) for e in _tail_events(run_dir)):
            os.write(master, b"q")
            sent_quit = time.perf_counter()
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    os.close(master)
    events = read_events(run_dir)
    if not any(isinstance(e, ev.Finished) for e in events):
        last = [line for line in screen.decode(errors="replace").splitlines() if line.strip()]
        return f"failed: the dashboard run did not finish; its terminal's last line: {last[-1][:200] if last else ''}"
    return row_from_events(name, events, time.perf_counter() - began, float("nan"))


def child_env() -> dict[str, str]:
    """The environment for a child running the engine from the checkout; gpu.sh's PYTHONPATH is
    kept (it may hold the carried textual wheels)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def torchrun_run(name: str, run_dir: Path, nproc: str, args: list[str]) -> Row | str:
    """The same recipe as ``python -m engine --nproc NPROC`` (torchrun; ``auto``: one process per GPU)."""
    import subprocess

    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "engine", "--nproc", nproc, *args, "--run-dir", str(run_dir)],
                          capture_output=True, text=True, env=child_env())  # fmt: skip
    events = read_events(run_dir) if (run_dir / "events.jsonl").is_file() else []
    if done.returncode != 0 or not any(isinstance(e, ev.Finished) for e in events):
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return f"failed (exit {done.returncode}): {last[0][:200]}"
    row = row_from_events(name, events, time.perf_counter() - began, float("nan"))
    row["loader"] = f"tensor, {next(e for e in events if isinstance(e, ev.RunStarted)).world_size} process(es)"
    return row


def _tail_events(run_dir: Path) -> list[ev.Event]:
    try:
        return read_events(run_dir)[-3:] if (run_dir / "events.jsonl").exists() else []
    except OSError:
        return []


def cli_args(options: dict[str, Any]) -> list[str]:
    out = []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        out += [flag, ("on" if value else "off") if isinstance(value, bool) else str(value)]
    return out


def print_row(r: Row) -> None:
    print(
        f"| {r['run']} | {r['loader']} | {r['epochs']} | {r['wall']:.1f} | {r['load']:.1f} | {r['compile']:.1f} | "
        f"{r['train']:.1f} | {r['eval']:.1f} | {r['img_s']:,.0f} | {100 * float(r['acc']):.2f}% | "
        + (f"{r['peak']:.2f} GiB |" if r["peak"] == r["peak"] else "n/a (other process) |"),
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch each: checks the script, not the speed")
    p.add_argument("--budget", type=float, default=470.0, help="seconds for the whole plan; optional runs that would "
                   "not fit are skipped (default 470: bench/gpu.sh's 8 minutes, less unpacking)")  # fmt: skip
    p.add_argument("--compile", action="store_true", help="also run fast with torch.compile")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    began = time.perf_counter()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"device: {gpu} | {machine()} | torch {torch.__version__} | CUDA {torch.version.cuda}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="cifar-tui-gpu-"))
    # Its runs' checkpoints and the unpacked data set are ~0.6-3 GB: gone when the bench ends, however it ends.
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    # Progress settings are the defaults: what a user's headless or dashboard run does.
    common: dict[str, Any] = {"device": args.device}
    if args.smoke:
        root, seed_epochs = demo_image_folder(tmp / "demo-folder", 8, 4), 1  # no data set needed
        # Two steps an epoch: the smoke run checks that every run of the plan runs and reports.
        common.update(data="demo", train_limit=64, test_limit=32)
        fast: dict[str, Any] = {"recipe": "fast", "batch_size": 32, "stem": "imagenet", "epochs": 1}
        seeds, tutorial_epochs = [0, 1], 1
    else:
        t0 = time.perf_counter()
        root = unpack_cifar_jpeg(tmp / "data")
        print(f"unpacked cifar10-jpeg.tar.gz in {time.perf_counter() - t0:.1f} s", flush=True)
        common["data"], seed_epochs = str(root), 2
        fast, seeds, tutorial_epochs = {"recipe": "fast"}, [0, 1, 2], 2
    left: Callable[[], float] = lambda: args.budget - (time.perf_counter() - began)  # noqa: E731
    print("\n| run | loader | epochs | wall s | data+model load s | compile s | train s | eval s | img/s | "
          "test acc | peak GPU mem |\n|---|---|---|---|---|---|---|---|---|---|---|", flush=True)  # fmt: skip
    rows: list[Row] = []
    notes: list[str] = []

    def record(row: Row | str, name: str) -> None:
        if isinstance(row, str):
            notes.append(f"{name}: {row}")
            print(f"| {name} | {row} |", flush=True)
        else:
            rows.append(row)
            print_row(row)

    # The tutorial's own loop: no ImageNet weights on an offline box, so it starts from scratch (as the recipes below).
    record(seed_run(f"tutorial's loop x{seed_epochs}", root, seed_epochs, args.device), "seed")
    for loader in ("dataloader", "tensor"):
        name = f"tutorial x{tutorial_epochs}, {loader}"
        record(engine_run(name, tmp / f"tutorial-{loader}", **common, recipe="tutorial", epochs=tutorial_epochs,
                          weights="none", loader=loader), name)  # fmt: skip
    fast_rows: list[Row] = []
    for seed in seeds:
        if fast_rows and left() < 1.2 * fast_rows[0]["wall"]:
            record("skipped: over the time budget", f"fast seed {seed}")
            continue
        fast_rows.append(engine_run(f"fast seed {seed}", tmp / f"fast-{seed}", **common, **fast, seed=seed))
        record(fast_rows[-1], "")
    # The learning-rate finder's cost on the GPU: about 100 steps of the recipe, then a restore.
    # (The smoke run checks the plan, not the finder: a dozen steps of it; the GPU run takes its 100.)
    finder = {"lr_find_steps": 12} if args.smoke else {}
    notes.append(
        f"lr-find on fast: {lr_find_note(tmp / 'fast-lr-find', **common, **fast, **finder)}"
    )  # said at the end
    ui_options = {**common, **fast}
    if left() < 1.3 * fast_rows[0]["wall"]:
        record("skipped: over the time budget", "fast under the dashboard")
        ui: Row | str = "skipped"
    else:
        ui = dashboard_run("fast seed 0, dashboard", tmp / "fast-ui", ["--seed", "0", *cli_args(ui_options)])
        record(ui, "fast under the dashboard")
    if args.compile and left() > 1.5 * fast_rows[0]["wall"]:
        record(engine_run("fast + compile", tmp / "fast-compile", **common, **fast, compile=True), "")
    # The data-parallel path (torchrun, NCCL) with one process per GPU: its cost against the plain
    # process on one GPU, its speed-up on several.
    if left() > 1.3 * fast_rows[0]["wall"]:
        # The smoke run takes 2 CPU processes on any machine (auto would follow its GPU count).
        nproc = "2" if args.smoke else "auto"
        record(torchrun_run(f"fast seed 0, --nproc {nproc}", tmp / "fast-ddp", nproc, ["--seed", "0", *cli_args(ui_options)]),
               f"fast, --nproc {nproc}")  # fmt: skip
    else:
        record("skipped: over the time budget", "fast, data-parallel")
    fast95 = {**fast, "recipe": "fast95"}
    fast95_epochs = int(fast95.get("epochs", 80))
    if left() > 1.15 * fast_rows[0]["wall"] * fast95_epochs / max(1, fast_rows[0]["epochs"]):
        record(engine_run("fast95", tmp / "fast95", **common, **fast95), "")
    else:
        record("skipped: over the time budget", "fast95")

    # A sweep's trials are forked from one process that imported torch once: they must find the GPU.
    notes.append(f"sweep on fast: {sweep_note(tmp / 'sweeps', ui_options)}")

    accs = [100 * float(r["acc"]) for r in fast_rows]
    spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"\nfast: {len(accs)} seeds, test accuracy mean {statistics.mean(accs):.2f}% (sd {spread:.2f}, "
          f"min {min(accs):.2f}, max {max(accs):.2f}), wall mean {statistics.mean(r['wall'] for r in fast_rows):.1f} s")  # fmt: skip
    seed_row = rows[0]
    for r in rows[1:3]:
        print(f"{r['run']}: {r['wall'] / seed_row['wall']:.2f}x the tutorial's loop wall time "
              f"({r['img_s'] / seed_row['img_s']:.2f}x its images/s)")  # fmt: skip
    if isinstance(ui, dict):
        print(f"dashboard cost: fast images/s under the dashboard / headless (seed 0) = "
              f"{ui['img_s'] / fast_rows[0]['img_s']:.3f}")  # fmt: skip
    for note in notes:
        print(f"note: {note}")
    print(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()

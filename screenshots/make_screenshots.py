"""Regenerate the README screenshots from a real run (demo data, CPU): python screenshots/make_screenshots.py
(``... steering``: only the learning-rate finder's offer and a steered run; ``... sweep``: only the
sweep screen, from a real sweep of eight small trials; ``... gallery``: only
the mistakes gallery, where the model looked and the batch view, from a short run on the real
CIFAR-10 images of ../shared/data/cifar10-mini, or demo data where that is missing)

Uses Textual's run_test + save_screenshot so the pictures never drift from the code.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from engine.run.config import TrainConfig, from_recipe  # noqa: E402
from tui.app import CifarTui, make_app  # noqa: E402


async def wait_until(pilot, cond, timeout: float = 300.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise TimeoutError("screenshot state not reached")
        await pilot.pause(0.1)


async def quit_without_saving(pilot, app: CifarTui) -> None:  # type: ignore[no-untyped-def]
    """q while training, then "Quit without saving": the screenshot's run is not kept."""
    await pilot.press("q")
    await pilot.pause(0.3)
    await pilot.click("#nosave")
    await wait_until(pilot, lambda: not app.is_running, 60)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # The quickstart's own command, `cifar-tui --data demo`: what a newcomer sees first is what they get.
        cfg = from_recipe("tutorial", data="demo", weights="none", run_dir=f"{tmp}/run")
        app: CifarTui = make_app(cfg, refresh_hz=2.0)
        async with app.run_test(size=(120, 40)) as pilot:
            state = lambda: app.run_state  # noqa: E731
            await wait_until(pilot, lambda: state().epoch >= 1 and state().step > 20)
            await pilot.pause(1.5)
            app.save_screenshot("training.svg", str(HERE))
            await pilot.press("p")
            await wait_until(pilot, lambda: state().state == "paused")
            await pilot.pause(1.0)
            app.save_screenshot("paused.svg", str(HERE))
            await pilot.press("p")
            await wait_until(pilot, lambda: state().finished is not None)
            await pilot.pause(1.5)
            app.save_screenshot("finished.svg", str(HERE))
            await pilot.press("c")
            await pilot.pause(0.5)
            app.save_screenshot("confusion.svg", str(HERE))
            await pilot.press("c")
        # The finished run again, as `cifar-tui attach` shows it: a read-only replay of events.jsonl.
        from engine.session.attached import AttachedSession

        replay = make_app(cfg, lambda _c: AttachedSession(Path(cfg.run_dir)), refresh_hz=2.0)
        async with replay.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: replay.run_state.finished is not None)
            await pilot.pause(1.5)
            replay.save_screenshot("attached-replay.svg", str(HERE))
        small = make_app(cfg.with_overrides(run_dir=f"{tmp}/small", epochs=2), refresh_hz=2.0)
        async with small.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: small.run_state.epoch >= 1 and small.run_state.step > 20)
            await pilot.pause(1.5)
            small.save_screenshot("training-80x24.svg", str(HERE))
            await quit_without_saving(pilot, small)
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("*.svg"))))


def browser_shot(url: str, name: str, keys: list[str]) -> None:
    """A served dashboard in headless Chromium: ``keys`` pressed, then the page as ``name``."""
    import time

    from playwright.sync_api import sync_playwright

    from tests.helpers.browser import launch, open_dashboard

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = open_dashboard(browser, url, 1400, 860)
        time.sleep(3)  # a few redraws after the replay
        for key in keys:
            page.keyboard.press(key)
            time.sleep(2)
        page.screenshot(path=str(HERE / name))
        browser.close()
    print(f"wrote {name}")


def served_in_a_browser() -> None:
    """served-browser.png: `cifar-tui serve` on a demo run, in headless Chromium (skipped without one)."""
    import signal
    import subprocess
    import time

    from engine.run.control_socket import ControlClient
    from engine.run.rundir import read_events
    from tests.helpers.browser import BROWSER

    try:
        import playwright.sync_api  # noqa: F401  (only whether it is there)
    except ImportError:
        print("served-browser.png skipped: pip install playwright")
        return
    if BROWSER is None:
        print("served-browser.png skipped: no chromium (apt install chromium)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        server = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "serve", "--port", "8791", "--data", "demo", "--epochs", "4", "--lr", "0.02",
             "--schedule", "onecycle", "--loader", "tensor", "--train-limit", "3000", "--run-dir", str(run_dir)],
            stdout=subprocess.PIPE, text=True, cwd=HERE.parent,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            url = next(line.split(" at ", 1)[1].strip() for line in server.stdout if "?token=" in line)

            def epochs_done() -> int:
                return sum(e.kind == "epoch_end" for e in read_events(run_dir))

            while epochs_done() < 2:
                time.sleep(0.5)
            browser_shot(url, "served-browser.png", [])
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
            try:
                ControlClient(run_dir).send("stop")
            except Exception:
                pass


def gallery() -> None:
    """The mistakes of a short run at 80x24 and 160x50, one of them with where the model looked,
    the batch view, and the mistakes in a browser: pictures from real images where the shared
    mini set is here."""
    from engine.train.trainer import Trainer
    from tests.helpers.common import MINI

    with tempfile.TemporaryDirectory() as tmp:
        data = str(MINI) if MINI.is_dir() else "demo"
        cfg = from_recipe("fast", data=data, weights="none", device="cpu", epochs=4, batch_size=100,
                          train_limit=0 if MINI.is_dir() else 2000, run_dir=f"{tmp}/run")  # fmt: skip
        Trainer(cfg, lambda _event: None).run()
        asyncio.run(gallery_in_the_terminal(cfg))
        gallery_in_a_browser(Path(cfg.run_dir))


async def gallery_in_the_terminal(cfg: TrainConfig) -> None:
    from engine.session.attached import AttachedSession

    for size, name in (((80, 24), "mistakes-80x24"), ((160, 50), "mistakes")):
        app = make_app(cfg, lambda _c: AttachedSession(Path(cfg.run_dir)), refresh_hz=2.0)
        async with app.run_test(size=size) as pilot:
            await wait_until(pilot, lambda: app.run_state.finished is not None)  # noqa: B023
            await pilot.press("c", "m")
            await pilot.pause(1.0)
            app.save_screenshot(f"{name}.svg", str(HERE))
            if name == "mistakes":
                await pilot.press("enter", "a")
                looked = app.screen.query_one("#looked")
                await wait_until(pilot, lambda: "looked (Grad-CAM" in str(looked.render()))  # noqa: B023
                await pilot.pause(1.0)
                app.save_screenshot("looked.svg", str(HERE))
                await pilot.press("escape", "escape", "escape", "b")
                await wait_until(pilot, lambda: bool(app.screen.query("Pair")))  # noqa: B023
                await pilot.pause(1.0)
                app.save_screenshot("batch.svg", str(HERE))
    print("wrote mistakes-80x24.svg, mistakes.svg, looked.svg, batch.svg")


def gallery_in_a_browser(run_dir: Path) -> None:
    """served-mistakes.png: `cifar-tui serve RUN`, c then m, in headless Chromium."""
    import signal
    import subprocess

    from tests.helpers.browser import BROWSER

    try:
        import playwright.sync_api  # noqa: F401  (only whether it is there)
    except ImportError:
        print("served-mistakes.png skipped: pip install playwright")
        return
    if BROWSER is None:
        print("served-mistakes.png skipped: no chromium (apt install chromium)")
        return
    server = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", str(run_dir), "--port", "8792"],
                              stdout=subprocess.PIPE, text=True, cwd=HERE.parent)  # fmt: skip
    try:
        assert server.stdout is not None
        url = next(line.split(" at ", 1)[1].strip() for line in server.stdout if "?token=" in line)
        browser_shot(url, "served-mistakes.png", ["c", "m"])
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


async def steering() -> None:
    """A run started with --lr-find: the finder's offer, then the run trained at it and steered."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = from_recipe("tutorial", data="demo", weights="none", run_dir=f"{tmp}/run", epochs=6,
                          schedule="cosine", lr_find="ask")  # fmt: skip
        app: CifarTui = make_app(cfg, refresh_hz=2.0)
        async with app.run_test(size=(120, 40)) as pilot:
            from tui.screens.lr_find import LrFindScreen

            await wait_until(pilot, lambda: isinstance(app.screen, LrFindScreen))
            await pilot.pause(1.5)
            app.save_screenshot("lr-find.svg", str(HERE))
            await pilot.click("#use")
            await wait_until(pilot, lambda: app.run_state.epoch >= 1 and app.run_state.step > 20)
            await pilot.press("minus")
            await wait_until(pilot, lambda: app.run_state.lr_scale < 1.5)
            await pilot.press("t")
            await pilot.pause(0.5)
            await pilot.press("tab", "+", "2", "tab", *"patience=2", "enter")
            await wait_until(pilot, lambda: app.run_state.early_stop != "")
            await wait_until(pilot, lambda: app.run_state.epoch >= 3)
            await pilot.pause(1.5)
            app.save_screenshot("steered.svg", str(HERE))
            await quit_without_saving(pilot, app)
    print("wrote lr-find.svg, steered.svg")


def sweep() -> None:
    """sweep.svg, sweep-80x24.svg and served-sweep.png: a real sweep of eight trials on the demo
    data (CPU, two at a time), its screen in the terminal and served in a browser."""
    import subprocess

    from tests.helpers.browser import BROWSER

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        subprocess.run([sys.executable, "-m", "tui.cli", "sweep", "lr-cutout", "--runs-root", str(runs), "--data",
                        "demo", "--weights", "none", "--train-limit", "512", "--test-limit", "128", "--loader",
                        "tensor", "--device", "cpu", "--epochs", "4", "--space", "lr=log:0.001..0.3", "--space",
                        "cutout=choice:0,8,12", "--trials", "8", "--parallel", "2", "--headless"],
                       check=True, cwd=HERE.parent)  # fmt: skip
        folder = runs / "lr-cutout.sweep"
        if BROWSER is None:
            print("served-sweep.png skipped: no chromium (apt install chromium)")
        else:  # first: Playwright's sync API wants a thread without a (closed) asyncio loop
            sweep_in_a_browser(folder)
        asyncio.run(sweep_in_the_terminal(folder))


def sweep_in_a_browser(folder: Path) -> None:
    """served-sweep.png: `cifar-tui serve RUNS/NAME.sweep`, v (accuracy against lr)."""
    import signal
    import subprocess

    server = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", str(folder), "--port", "8793"],
                                  stdout=subprocess.PIPE, text=True, cwd=HERE.parent)  # fmt: skip
    try:
        assert server.stdout is not None
        url = next(line.split(" at ", 1)[1].strip() for line in server.stdout if "?token=" in line)
        browser_shot(url, "served-sweep.png", ["v"])
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


async def sweep_in_the_terminal(folder: Path) -> None:
    from tui.sweep_app import SweepApp

    for size, name, keys in (((120, 36), "sweep.svg", []), ((80, 24), "sweep-80x24.svg", []),
                             ((120, 36), "sweep-lr.svg", ["v"])):  # fmt: skip
        app = SweepApp(folder)
        async with app.run_test(size=size) as pilot:
            await wait_until(pilot, lambda a=app: len(a.screen_stack) > 1 and getattr(a.screen, "view", None))
            for key in keys:
                await pilot.press(key)
            await pilot.pause(1.0)
            app.save_screenshot(name, str(HERE))
    print("wrote sweep.svg, sweep-80x24.svg, sweep-lr.svg")


if __name__ == "__main__":
    if sys.argv[1:] == ["sweep"]:
        sweep()
    elif sys.argv[1:] == ["steering"]:
        asyncio.run(steering())
    elif sys.argv[1:] == ["gallery"]:
        gallery()
    else:
        served_in_a_browser()  # first: Playwright's sync API wants a thread without a (closed) asyncio loop
        asyncio.run(main())
        asyncio.run(steering())
        gallery()
        sweep()

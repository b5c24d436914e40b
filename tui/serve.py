"""``cifar-tui serve``: the dashboard of a run in a browser, through textual-serve, private by default.

Every browser tab gets its own attached dashboard (``cifar-tui attach RUN`` run by textual-serve
under Textual's web driver); training stays in its own process, so closing a tab never stops it.

textual-serve has no authentication, so this module adds it: the server binds to 127.0.0.1
unless told otherwise, and every request needs a random token. The page takes it from the URL
printed at start (``/?token=...``) and keeps it in an HttpOnly, SameSite=Strict cookie; the page's
websocket carries it in its path. Anything else gets 403. Only the index, the websocket and
textual-serve's own static files are routed; its download route is not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hmac
import logging
import secrets
import shlex
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

COOKIE = "cifar_tui_token"
FONT_CSS = """<style>
      @font-face { font-family: "Roboto Mono"; src: url("{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf"); }
    </style>"""
GOOGLE_FONTS = (
    '<link\n      rel="stylesheet"\n      href="https://fonts.googleapis.com/css?family=Roboto%20Mono"\n    />'
)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def offline_template(folder: Path) -> Path:
    """textual-serve's page with its one internet resource (a Google Fonts stylesheet) replaced by
    the same font from textual-serve's own static files; written into ``folder``."""
    import textual_serve

    source = Path(textual_serve.__file__).parent / "templates" / "app_index.html"
    page = source.read_text(encoding="utf-8")
    page = page.replace(GOOGLE_FONTS, FONT_CSS) if GOOGLE_FONTS in page else page
    # Whatever else upstream may add later: no stylesheet or script from another site.
    page = "\n".join(line for line in page.splitlines() if "https://fonts." not in line)
    (folder / "app_index.html").write_text(page, encoding="utf-8")
    return folder


def make_server(command: str, *, host: str, port: int, token: str, templates: Path) -> Any:
    """A textual-serve Server that checks ``token`` on every request."""
    import aiohttp_jinja2
    import jinja2
    from aiohttp import web
    from textual_serve.app_service import AppService
    from textual_serve.server import Server, to_int

    class TokenServer(Server):  # type: ignore[misc]
        def _token_ok(self, given: str | None) -> bool:
            return given is not None and hmac.compare_digest(given.encode(), token.encode())

        @web.middleware
        async def check_token(self, request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path.startswith("/ws/"):
                allowed = self._token_ok(request.path.removeprefix("/ws/"))
            else:
                allowed = self._token_ok(request.query.get("token")) or self._token_ok(request.cookies.get(COOKIE))
            if not allowed:
                return web.Response(status=403, text="403 forbidden: open the URL with the token that "
                                    "cifar-tui serve printed\n")  # fmt: skip
            response: web.StreamResponse = await handler(request)
            if request.path == "/" and self._token_ok(request.query.get("token")):
                response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
            return response

        async def _make_app(self) -> web.Application:
            app = web.Application(middlewares=[self.check_token])
            aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(templates)))
            app.add_routes([
                web.get("/", self.handle_index, name="index"),
                web.get("/ws/{token}", self.handle_websocket, name="websocket"),
                web.static("/static", self.statics_path, name="static"),
            ])  # fmt: skip
            app.on_startup.append(self.on_startup)
            return app

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.sessions: set[asyncio.Task[Any]] = set()  # one per open tab

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            """textual-serve's session with one change: its end ends the tab's dashboard, whenever
            the tab left (textual-serve only asks it to quit, which one still starting misses)."""
            task = asyncio.current_task()
            assert task is not None
            self.sessions.add(task)
            websocket = web.WebSocketResponse(heartbeat=15)
            service: AppService | None = None
            try:
                await websocket.prepare(request)
                close: Any = websocket.close  # (awaitable; textual-serve's own hint is narrower)
                service = AppService(self.command, write_bytes=websocket.send_bytes, write_str=websocket.send_str,
                                     close=close, download_manager=self.download_manager, debug=self.debug)  # fmt: skip
                await service.start(to_int(request.query.get("width", "80"), 80),
                                    to_int(request.query.get("height", "24"), 24))  # fmt: skip
                await self._process_messages(websocket, service)
            except asyncio.CancelledError:  # serve is stopping
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(websocket.close(), 2)
            except Exception as error:
                logging.getLogger("cifar-tui").warning("a browser session failed: %s", error)
            finally:
                self.sessions.discard(task)
                if service is not None:
                    await end_dashboard(service)
            return websocket

        @aiohttp_jinja2.template("app_index.html")
        async def handle_index(self, request: web.Request) -> dict[str, Any]:
            # URLs relative to the host the browser used (127.0.0.1, localhost, a tunnel's port),
            # so the cookie and the page always belong to the same origin.
            scheme = "wss" if request.secure else "ws"
            return {
                "font_size": to_int(request.query.get("fontsize", "16"), 16),
                "app_websocket_url": f"{scheme}://{request.host}/ws/{token}",
                "config": {"static": {"url": "/static/"}},
                "application": {"name": "cifar-tui"},
            }

        async def on_startup(self, app: web.Application) -> None:
            pass  # cifar-tui prints its own one-line banner with the tokened URL

        def initialize_logging(self) -> None:
            logging.basicConfig(level="WARNING", format="cifar-tui serve: %(message)s")  # no line per request
            # A tab that left before its dashboard was up is not a failure (the dashboard's own
            # error output, when it has any, is still shown).
            logging.getLogger("textual-serve").addFilter(
                lambda record: record.getMessage() != "Application failed to start"
            )

        def serve_on(self, sock: socket.socket) -> None:
            """Serve on a socket that already listens (the URL is printed only once it answers)
            until SIGINT/SIGTERM; then close every tab's dashboard while the loop still runs, so
            the exit is quiet."""
            self.initialize_logging()
            loop = asyncio.new_event_loop()

            async def run() -> None:
                stop = asyncio.Event()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                runner = web.AppRunner(await self._make_app(), handle_signals=False, access_log=None)
                await runner.setup()
                await web.SockSite(runner, sock).start()
                await stop.wait()
                # Each open tab: its websocket closes and its dashboard is told to quit (training goes on).
                for task in list(self.sessions):
                    task.cancel()
                if self.sessions:
                    await asyncio.wait(list(self.sessions), timeout=15)
                await runner.cleanup()

            try:
                loop.run_until_complete(run())
                gc.collect()  # finished dashboards' pipes close here, not after the loop is gone
                loop.run_until_complete(asyncio.sleep(0.1))
            finally:
                loop.close()

    return TokenServer(command, host=host, port=port, title="cifar-tui")


async def end_dashboard(service: Any, wait_s: float = 10.0) -> None:
    """End a tab's dashboard process for sure: ask it to quit, close its input (it ends when its
    input closes, even before it is ready to take a quit), wait, then kill it. Never raises and
    is not cut short by a cancellation: the process is gone when this returns.

    Uses textual-serve's AppService internals (``_process``, ``_stdin``, ``_task``; pinned <2)."""
    process = service._process
    try:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(service.send_meta({"type": "quit"}), 2)
        with contextlib.suppress(Exception):
            service._stdin.close()
        if process is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), wait_s)
    finally:
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        task = service._task
        if task is not None and not task.done():
            task.cancel()


def attach_command(run_dir: Path, refresh: float) -> str:
    """The shell command textual-serve runs for a tab: ``exec`` so that the process it holds is
    the dashboard itself (ending it ends the dashboard, not a shell in front of it)."""
    return "exec " + " ".join(
        shlex.quote(part)
        for part in (sys.executable, "-m", "tui.cli", "attach", str(run_dir.resolve()), "--refresh", f"{refresh:g}")
    )


def serve_main(argv: list[str]) -> int:
    from engine.cli import launch_plan
    from engine.options import OneLineParser, path_arg
    from engine.options import usage_error as fail
    from engine.run.catalog import NoSuchRun, choose_run
    from engine.run.errors import UserError
    from engine.run.rundir import EVENTS
    from tui.launcher import start_in_background
    from tui.options import dashboard_parser

    p = OneLineParser(
        prog="cifar-tui serve",
        usage="cifar-tui serve [RUN_DIR | RUNS/NAME.sweep] [--host HOST] [--port PORT] [--runs-root DIR] "
        "[training options]",
        allow_abbrev=False,  # an abbreviation must never swallow a training option
        description="Serve the dashboard of a run in a browser (textual-serve), private by default. "
        "Without RUN_DIR: the latest run, or a new one started in the background when training options "
        "are given (e.g. cifar-tui serve --data demo --epochs 5).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--runs-root", type=path_arg("--runs-root"), help="look only in this runs folder")
    p.add_argument("--refresh", type=float, default=1.0, help="plot redraws per second in each tab")
    # RUN_DIR only in first place: a positional would otherwise take a training option's value.
    run_arg = argv[0] if argv and not argv[0].startswith("-") else None
    args, training = p.parse_known_args(argv[1:] if run_arg else argv)
    try:
        args.run_dir = path_arg("RUN_DIR")(run_arg) if run_arg else None
    except argparse.ArgumentTypeError as exc:
        return fail(f"argument RUN_DIR: {exc}")
    try:
        import textual_serve  # noqa: F401
    except ImportError:
        return fail("serve needs the textual-serve package: pip install textual-serve")
    if not 0 < args.port < 65536:
        return fail("--port must be between 1 and 65535")
    if not 0 < args.refresh <= 30:
        return fail("--refresh must be > 0 and <= 30")
    if training:
        if args.run_dir:
            return fail("give a run directory to serve, or training options for a new run, not both")
        targs = dashboard_parser(training).parse_args(training)
        try:
            cfg, nproc = launch_plan(targs)
        except (UserError, ValueError) as exc:
            return fail(str(exc))
        started = start_in_background(nproc, cfg, targs.max_restarts)  # N ranks are served as one run
        if isinstance(started, int):
            return started
        run_dir = started
    elif args.run_dir and (Path(args.run_dir) / "sweep.json").is_file():
        run_dir = Path(args.run_dir)  # a sweep's folder (RUNS/NAME.sweep): served as the sweep screen
    else:
        try:
            run_dir = choose_run(args.run_dir, [Path(args.runs_root)] if args.runs_root else None)
        except NoSuchRun as exc:
            return fail(f"{exc}; or start one: cifar-tui serve --data demo")
    if (run_dir / "sweep.json").is_file():  # a sweep's folder: every tab gets the sweep screen
        return serve_run(run_dir, args, sweep_command(run_dir, args.refresh))
    if not (run_dir / EVENTS).is_file():
        return fail(f"{run_dir} holds no run (no {EVENTS})")
    return serve_run(run_dir, args)


def sweep_command(folder: Path, refresh: float) -> str:
    """The command a tab runs for a sweep's folder (RUNS/NAME.sweep): its screen, watching."""
    name = folder.resolve().name.removesuffix(".sweep")
    parts = [sys.executable, "-m", "tui.cli", "sweep", name, "--runs-root", str(folder.resolve().parent), "--watch"]
    return "exec " + " ".join(shlex.quote(part) for part in parts)


def serve_run(run_dir: Path, args: argparse.Namespace, command: str = "") -> int:
    from engine.options import usage_error as fail

    token = secrets.token_urlsafe(24)
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown_host}:{args.port}/?token={token}"
    if args.host not in LOCAL_HOSTS:
        print(f"cifar-tui: warning: serving on {args.host}: anyone who can reach port {args.port} and learns "
              "the token can steer this run, over plain HTTP; the default 127.0.0.1 with an SSH tunnel is "
              "safer", file=sys.stderr)  # fmt: skip
    try:
        sock = listening_socket(args.host, args.port)
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    with sock, tempfile.TemporaryDirectory(prefix="cifar-tui-serve-") as folder:
        server = make_server(command or attach_command(run_dir, args.refresh), host=args.host, port=args.port, token=token,
                             templates=offline_template(Path(folder)))  # fmt: skip
        print(f"cifar-tui: serving {run_dir} at {url}", flush=True)
        print(f"cifar-tui: from a laptop: ssh -L {args.port}:localhost:{args.port} THIS-HOST, then open the URL "
              "above; Ctrl-C stops serving (training goes on)", flush=True)  # fmt: skip
        server.serve_on(sock)
    return 0


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound and listening before the URL is printed: a browser (or a test) opening it at once
    finds the server, and a port in use is a clear error instead of a traceback later."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock

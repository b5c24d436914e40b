"""How the dashboard draws pictures: textual-image's widgets, one kind chosen once per process.

textual-image asks the terminal what it can draw (Sixel, the kitty graphics protocol) when it
is imported, which must happen before Textual starts reading the terminal: this module is
imported with the app. ``CIFAR_TUI_IMAGES`` overrides the choice:

- ``auto`` (default): the terminal's own graphics where it has them, outside tmux (which passes
  them on badly or not at all) and outside the browser view; else half cells;
- ``halfcell``: two pixels per cell in colour (works in tmux, the browser, any 256-colour or
  true-colour terminal);
- ``unicode``: block characters in one colour, for terminals without colour (``NO_COLOR``);
- ``sixel``, ``tgp``: force a graphics protocol."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from textual.widget import Widget
from textual_image import widget as _widgets

MODES = ("auto", "halfcell", "unicode", "sixel", "tgp")


def image_mode(environ: dict[str, str] | None = None) -> str:
    """The kind of image drawing to use, from ``CIFAR_TUI_IMAGES`` and where the app runs."""
    env = os.environ if environ is None else environ
    asked = env.get("CIFAR_TUI_IMAGES", "auto").strip().lower()
    if asked in MODES and asked != "auto":
        return asked
    if "NO_COLOR" in env:
        return "unicode"
    served = "TEXTUAL_DRIVER" in env  # textual-serve runs the app with its web driver
    if "TMUX" in env or served or not (sys.__stdout__ and sys.__stdout__.isatty()):
        return "halfcell"
    detected = _widgets.Image
    if detected is _widgets.SixelImage:
        return "sixel"
    return "tgp" if detected is _widgets.TGPImage else "halfcell"


def image_widget(mode: str | None = None) -> Callable[..., Widget]:
    """The textual-image widget class for ``mode`` (default: :func:`image_mode`)."""
    kinds: dict[str, Callable[..., Widget]] = {
        "halfcell": _widgets.HalfcellImage,
        "unicode": _widgets.UnicodeImage,
        "sixel": _widgets.SixelImage,
        "tgp": _widgets.TGPImage,
    }
    return kinds[mode or image_mode()]

"""How the dashboard draws pictures, by where it runs (tui/widgets/images.py)."""

from __future__ import annotations

import pytest

from tui.widgets.images import image_mode, image_widget


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({"TMUX": "/tmp/tmux-0/default,1,0"}, "halfcell"),  # tmux passes graphics on badly: half cells
        ({"TEXTUAL_DRIVER": "textual.drivers.web_driver:WebDriver"}, "halfcell"),  # the browser view
        ({"NO_COLOR": "1"}, "unicode"),  # one colour: block shapes still draw the picture
        ({"NO_COLOR": "1", "CIFAR_TUI_IMAGES": "halfcell"}, "halfcell"),  # the override wins
        ({"CIFAR_TUI_IMAGES": "SIXEL"}, "sixel"),
        ({"CIFAR_TUI_IMAGES": "nonsense", "TMUX": "x"}, "halfcell"),  # an unknown value: the automatic choice
    ],
)
def test_the_image_mode_follows_where_the_dashboard_runs(env: dict[str, str], mode: str) -> None:
    assert image_mode(env) == mode
    kinds = {"halfcell": "HalfcellImage", "unicode": "UnicodeImage", "sixel": "sixel", "tgp": "TGPImage"}
    widget = image_widget(mode)
    assert kinds[mode] in f"{widget.__module__}.{widget.__name__}"

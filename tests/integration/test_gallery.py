"""The mistakes gallery: what the trainer writes after each evaluation, and its export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.data.pipeline import TensorBatches
from engine.data.sources import load_data
from engine.run import events as ev
from engine.run.gallery import MAX_TILES, read_gallery
from engine.train.checkpoint import load_checkpoint
from engine.train.models import build_model
from engine.train.trainer import Trainer
from tests.helpers.common import Recorder, tiny_config


def test_the_gallery_holds_exactly_the_images_the_saved_model_gets_wrong(tmp_path: Path, recorder: Recorder) -> None:
    cfg = tiny_config(tmp_path, test_limit=200)
    Trainer(cfg, recorder).run()
    gallery = read_gallery(Path(cfg.run_dir))
    last = recorder.of(ev.Evaluation)[-1]
    assert gallery is not None and (gallery.epoch, gallery.global_step) == (last.epoch, last.global_step)
    assert gallery.class_names == last.class_names and gallery.accuracy == last.accuracy
    # A separate evaluation of the saved checkpoint, image by image.
    data = load_data(cfg, lambda _kind, _text: None)
    model = build_model(cfg, len(data.class_names), lambda _kind, _text: None)
    model.load_state_dict(load_checkpoint(Path(cfg.run_dir) / "checkpoints" / "last.pt")["model"])
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _y in TensorBatches(data.test, 64, torch.device("cpu"), 0, train=False)
                            .batches(0)])  # fmt: skip
    predicted = logits.argmax(1)
    wrong = {i: int(predicted[i]) for i in range(len(data.test)) if predicted[i] != data.test.labels[i]}
    assert 0 < len(wrong) <= MAX_TILES  # all of them kept: 200 test images
    assert gallery.total_wrong == len(wrong)
    assert {m.index: m.predicted for m in gallery.mistakes} == wrong
    assert all(m.true == int(data.test.labels[m.index]) for m in gallery.mistakes)
    assert all(m.true != m.predicted for m in gallery.mistakes)
    for m in gallery.mistakes:
        probabilities = [p for _c, p in m.top]
        assert len(m.top) == 3 and probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.001
    # Each tile is the test image itself.
    sheet = np.asarray(Image.open(gallery.sheet).convert("RGB"))
    for m in gallery.mistakes[:20]:
        left, top, right, bottom = gallery.tile_box(m)
        assert np.array_equal(sheet[top:bottom, left:right], data.test.images[m.index].permute(1, 2, 0).numpy())
    # A cell holds only its own mistakes, most confident first.
    true, pred = gallery.mistakes[0].true, gallery.mistakes[0].predicted
    cell = gallery.cell(true, pred)
    assert cell and all((m.true, m.predicted) == (true, pred) for m in cell)
    assert [m.confidence for m in cell] == sorted((m.confidence for m in cell), reverse=True)
    assert len(cell) == sum(1 for i, p in wrong.items() if (int(data.test.labels[i]), p) == (true, pred))


def test_export_mistakes_writes_a_labelled_picture(tmp_path: Path, project_env: dict[str, str]) -> None:
    cfg = tiny_config(tmp_path, test_limit=60)
    Trainer(cfg, Recorder()).run()
    gallery = read_gallery(Path(cfg.run_dir))
    assert gallery is not None
    out = tmp_path / "mistakes.png"
    command = [sys.executable, "-m", "tui.cli", "export", cfg.run_dir, "--mistakes", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=project_env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    picture = Image.open(out)
    columns = min(10, len(gallery.mistakes))
    rows = -(-len(gallery.mistakes) // columns)
    assert picture.size == (columns * 96, rows * (96 + 26))
    # A run without a gallery: one line, exit 2, nothing written.
    empty = tmp_path / "empty-run"
    empty.mkdir()
    (empty / "events.jsonl").write_text("")
    again = subprocess.run([*command[:4], str(empty), "--mistakes", str(tmp_path / "none.png")],
                           capture_output=True, text=True, env=project_env, timeout=120)  # fmt: skip
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert not (tmp_path / "none.png").exists()


async def test_the_confusion_matrix_opens_a_cells_mistakes_and_steps_through_them(tmp_path: Path) -> None:
    """c, the arrows to a cell off the diagonal, Enter: only that cell's images; Enter again: one
    large, the arrows step; m: the most confident mistakes of all classes."""
    from textual.widgets import Label

    from engine.session.attached import AttachedSession
    from tests.helpers.common import screen_text
    from tests.helpers.waiting import app_until
    from tui.app import make_app
    from tui.screens.confusion import ConfusionScreen
    from tui.screens.gallery import GalleryScreen, MistakeScreen, Tile

    cfg = tiny_config(tmp_path, test_limit=100)
    Trainer(cfg, Recorder()).run()
    run = Path(cfg.run_dir)
    gallery = read_gallery(run)
    assert gallery is not None
    # The fullest cell off the diagonal, the cursor's way there from its start (row 0, column 1).
    confusion = [[len(gallery.cell(t, p)) if t != p else -1 for p in range(10)] for t in range(10)]
    true, predicted = max(((t, p) for t in range(10) for p in range(10)), key=lambda c: confusion[c[0]][c[1]])
    app = make_app(tiny_config(tmp_path), lambda _cfg: AttachedSession(run), refresh_hz=4.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await app_until(pilot, lambda: app.run_state.finished is not None)
        await pilot.press("c")
        await app_until(pilot, lambda: isinstance(app.screen, ConfusionScreen))
        await pilot.press(*["down"] * true, *["right"] * predicted, "enter")
        await app_until(pilot, lambda: isinstance(app.screen, GalleryScreen))
        tiles = list(app.screen.query(Tile))
        assert [t.mistake for t in tiles] == gallery.cell(true, predicted)
        assert len(tiles) == confusion[true][predicted] > 0
        names = gallery.class_names
        assert f"{names[true]} taken for {names[predicted]}: {len(tiles)} image" in screen_text(app)
        await pilot.press("enter")
        await app_until(pilot, lambda: isinstance(app.screen, MistakeScreen))
        first = tiles[0].mistake
        assert f"test image {first.index}" in screen_text(app) and gallery.top_line(first) in screen_text(app)
        # a: where it looked, computed by a process of its own from the checkpoint (torch is not here).
        await pilot.press("a")
        looked = app.screen.query_one("#looked", Label)
        await app_until(
            pilot, lambda: "where it looked (Grad-CAM at layer2, step 8)" in str(looked.render()), timeout=120
        )
        names = gallery.class_names
        assert f"middle: {names[first.predicted]} · right: {names[first.true]}" in str(looked.render())
        assert app.screen.query_one("#cam-predicted").display and app.screen.query_one("#cam-true").display
        if len(tiles) > 1:
            await pilot.press("right")
            await app_until(pilot, lambda: f"test image {tiles[1].mistake.index}" in screen_text(app))
            assert f"right: {names[tiles[1].mistake.true]}" in str(looked.render())  # computed with the first
        await pilot.press("escape", "escape")
        await app_until(pilot, lambda: isinstance(app.screen, ConfusionScreen))
        await pilot.press("m")
        await app_until(pilot, lambda: isinstance(app.screen, GalleryScreen))
        shown = [t.mistake for t in app.screen.query(Tile)]
        assert shown == gallery.most_confident() and len(shown) == gallery.total_wrong
        assert "most confident mistakes" in screen_text(app)


def test_the_maps_command_refuses_an_image_the_run_does_not_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command the dashboard starts for the maps (the confusion test runs it as a process)."""
    from engine.session.cam import main as maps_command

    cfg = tiny_config(tmp_path, test_limit=40)
    Trainer(cfg, Recorder()).run()
    assert maps_command([cfg.run_dir, "3", "40"]) == 2
    assert capsys.readouterr().err.strip() == "no test image 40: the run's test split holds 40"
    assert not (Path(cfg.run_dir) / "gallery" / "cam.json").exists()


@pytest.mark.parametrize("loader", ["tensor", "dataloader"])
def test_the_batch_view_is_the_batch_the_trainer_takes(
    tmp_path: Path, loader: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rebuilt from the run's seed: the augmented images are the ones its loader yields at that
    step, beside the same training images unaugmented."""
    from engine.ranks.group import World
    from engine.run.gallery import read_batch_view
    from engine.session.batch_view import batch_images, write_batch_view
    from engine.train.setup import batch_sources

    cfg = tiny_config(tmp_path, loader=loader, workers=0, cutout=8 if loader == "tensor" else 0)
    Trainer(cfg, Recorder()).run()
    run = Path(cfg.run_dir)
    write_batch_view(run, epoch=0, step=3)
    view = read_batch_view(run)
    assert view is not None and (view.epoch, view.step, view.loader) == (0, 3, loader)
    data = load_data(cfg, lambda _kind, _text: None)
    train, _ = batch_sources(cfg, data, torch.device("cpu"), World(), compiled=False)
    x, y = next(iter(train.batches(0, start_step=3)))
    assert view.labels == y.tolist() and len(view.labels) == 16
    sheet = np.asarray(Image.open(view.sheet).convert("RGB"))
    for k, index in enumerate(batch_images(train, 0, 3)):
        (bl, bt, br, bb), (al, at, ar, ab) = view.boxes(k)
        assert np.array_equal(sheet[bt:bb, bl:br], data.train.images[index].permute(1, 2, 0).numpy())
        expected = (x[k] * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        assert np.array_equal(sheet[at:ab, al:ar], expected)
    assert not np.array_equal(sheet[:, :32], sheet[:, 32:64])  # augmentation changed something
    # A finished run shows its last batch; export writes it as a labelled picture.
    from tui.cli import main as cifar_tui

    out = tmp_path / "batch.png"
    assert cifar_tui(["export", str(run), "--batch", str(out)]) == 0, capsys.readouterr().err
    again = read_batch_view(run)
    assert again is not None and (again.epoch, again.step) == (0, 7)
    assert Image.open(out).size == (4 * (2 * 96 + 8), 4 * (96 + 26))  # 16 images, 4 pairs a row
    if loader == "tensor":  # the TensorBoard export carries the batch view too (TensorBoard's Images tab)
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        logdir = tmp_path / "tb"
        assert cifar_tui(["export", str(run), "--tensorboard", str(logdir)]) == 0, capsys.readouterr().err
        tb = EventAccumulator(str(logdir / "run"))
        tb.Reload()
        assert [(i.step, i.width) for i in tb.Images("training_batch")] == [(0, 4 * (2 * 96 + 8))]


async def test_b_shows_the_batch_before_and_after_augmentation(tmp_path: Path) -> None:
    from engine.session.attached import AttachedSession
    from tests.helpers.waiting import app_until
    from tui.app import make_app
    from tui.screens.batch import BatchScreen, Pair

    cfg = tiny_config(tmp_path)
    Trainer(cfg, Recorder()).run()
    app = make_app(tiny_config(tmp_path), lambda _cfg: AttachedSession(Path(cfg.run_dir)), refresh_hz=4.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await app_until(pilot, lambda: app.run_state.finished is not None)
        await pilot.press("b")
        await app_until(pilot, lambda: isinstance(app.screen, BatchScreen) and bool(app.screen.query(Pair)),
                        timeout=120)  # fmt: skip
        assert len(app.screen.query(Pair)) == 16
        title = str(app.screen.query_one("#title").render())
        assert title.startswith("what the model sees: batch 8 of epoch 1 (tensor loader), the first 16 images")


async def test_the_runs_screen_opens_a_finished_runs_gallery(tmp_path: Path) -> None:
    from engine.session.attached import AttachedSession
    from tests.helpers.waiting import app_until
    from tui.app import make_app
    from tui.screens.gallery import GalleryScreen, Tile
    from tui.screens.runs import RunsScreen

    root = tmp_path / "runs"
    cfg = tiny_config(tmp_path, run_dir=str(root / "only"), test_limit=50)
    Trainer(cfg, Recorder()).run()
    gallery = read_gallery(Path(cfg.run_dir))
    assert gallery is not None
    app = make_app(tiny_config(tmp_path), lambda _cfg: AttachedSession(Path(cfg.run_dir)), refresh_hz=4.0)
    async with app.run_test(size=(100, 30)) as pilot:
        await app_until(pilot, lambda: app.run_state.finished is not None)
        await pilot.press("r")
        await app_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        await pilot.press("g")
        await app_until(pilot, lambda: isinstance(app.screen, GalleryScreen))
        assert [t.mistake for t in app.screen.query(Tile)] == gallery.most_confident()


def test_an_image_folder_at_another_size_gets_tiles_that_fit(tmp_path: Path, mini_data: Path) -> None:
    """--image-size 80 on the user's own folder: the gallery's tiles are scaled down to 64 px,
    the batch view's too, and the maps are read where the network still has 4x4 places."""
    from engine.run.gallery import MAX_TILE_PX, read_batch_view, read_cams
    from engine.session.batch_view import write_batch_view
    from engine.session.cam import write_cams

    cfg = tiny_config(tmp_path, data=str(mini_data), image_size=80, train_limit=64, test_limit=40)
    Trainer(cfg, Recorder()).run()
    run = Path(cfg.run_dir)
    gallery = read_gallery(run)
    assert gallery is not None and gallery.tile_px == MAX_TILE_PX and gallery.class_names[0] == "airplane"
    sheet = Image.open(gallery.sheet)
    assert sheet.size == (gallery.columns * 64, -(-len(gallery.mistakes) // gallery.columns) * 64)
    write_batch_view(run)
    view = read_batch_view(run)
    assert view is not None and view.tile_px == 64 and Image.open(view.sheet).size == (128, 64 * len(view.labels))
    write_cams(run, [m.index for m in gallery.mistakes[:3]])
    cams = read_cams(run)
    assert cams is not None and cams.layer == "layer3" and cams.tile_px == 64  # 80 px: layer3 is 5x5, layer4 3x3

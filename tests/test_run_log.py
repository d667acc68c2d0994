"""What a run shows and writes besides metrics.jsonl: progress lines, loss curves, new-PNG detection."""

import json
import os

from latentebm_jax.training import run_log


def test_progress_line_leads_with_losses_and_counts_the_eta_from_the_rate():
    line = run_log.progress_line(
        200, 6000, 4.0, {"f_pos": 0.5, "loss_g": 20.26, "epoch": 2.0, "loss_e": -0.0114}
    )
    assert (
        line == "step 200/6,000 (3%) · 4.00 steps/s · ETA 24 min · loss_g 20.3 · loss_e -0.0114 · f_pos 0.5"
    )
    assert run_log.progress_line(1, 10, None, {}) == "step 1/10 (10%)"
    assert run_log.format_duration(30) == "30 s" and run_log.format_duration(3 * 3600) == "3.0 h"


def test_loss_curves_draw_training_and_interval_numbers_and_skip_an_empty_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    out = str(tmp_path / "loss_curves.png")
    assert run_log.save_loss_curves(str(path), out, "lebm") is None
    path.write_text(json.dumps({"step": 500, "eval/auprc": 0.3}) + "\n")
    assert run_log.save_loss_curves(str(path), out, "lebm") is None  # no training records yet
    with open(path, "a") as f:
        for step in range(10, 110, 10):
            f.write(
                json.dumps({"step": step, "epoch": step / 10, "loss_g": 1.0 / step, "f_pos": step}) + "\n"
            )
        f.write(json.dumps({"step": 100, "eval/auprc": 0.4}) + "\n")
    assert run_log.save_loss_curves(str(path), out, "lebm on digits") == out
    from PIL import Image

    with Image.open(out) as im:
        width, height = im.size
    assert width == 3 * 360 and height == 320  # three panels (loss_g, f_pos, eval/auprc) in one row


def test_new_pngs_are_the_ones_written_since_the_snapshot(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"x")
    before = run_log.png_times(str(tmp_path))
    b.write_bytes(b"y")
    os.utime(a, (1, 1))  # rewritten
    assert run_log.new_pngs(str(tmp_path), before) == sorted([str(a), str(b)])
    assert run_log.ordered_quantities(["f_pos", "step", "loss_e", "epoch", "loss_g"]) == [
        "loss_e",
        "loss_g",
        "f_pos",
    ]


def test_wandb_gets_the_numbers_and_pictures_and_a_resumed_run_keeps_its_id(tmp_path, monkeypatch):
    """W&B is imported only when a project is named; a fake module records what the run logs."""
    import sys
    import types

    import ml_collections
    from PIL import Image

    calls: list = []

    class FakeRun:
        def log(self, data, step):
            calls.append(("log", step, data))

        def finish(self):
            calls.append(("finish",))

    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls.append(("init", kw["id"], kw["project"], kw["resume"])) or FakeRun()
    fake.Image = lambda path: ("image", os.path.basename(path))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    config = ml_collections.ConfigDict({"train": {"tensorboard": False, "wandb_project": "lebm-digits"}})
    config.method = "lebm"
    Image.new("RGB", (4, 4)).save(tmp_path / "samples.png")
    with run_log.RunLog(str(tmp_path), config) as logs:
        logs.write(10, {"loss_g": 2.5, "epoch": 1.0, "eval/note": "text is not a number"})
        logs.images(10, [str(tmp_path / "samples.png")])
    with run_log.RunLog(str(tmp_path), config):
        pass
    run_id = (tmp_path / "wandb_id.txt").read_text().strip()
    assert calls[0] == ("init", run_id, "lebm-digits", "allow")
    assert calls[1] == ("log", 10, {"loss_g": 2.5, "epoch": 1.0})
    assert calls[2] == ("log", 10, {"images/samples": ("image", "samples.png")})
    assert calls[3] == ("finish",) and calls[4] == (
        "init",
        run_id,
        "lebm-digits",
        "allow",
    )  # same run resumed

"""bone-fit's terminal: log lines above the progress bar, libraries' clutter gone."""

import io
import logging
import sys

from tqdm import tqdm

from bone_seg.cli.terminal import tidy_library_logging
from bone_seg.workflows.fit import log_above_progress_bars


def test_log_lines_are_written_above_the_bar_and_debug_stays_off_the_console(monkeypatch):
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    root = logging.getLogger()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO)
    monkeypatch.setattr(root, "handlers", [console])
    monkeypatch.setattr(root, "level", logging.DEBUG)
    bar = tqdm(total=4, file=sys.stderr, ncols=60, desc="Epoch 0")
    bar.update(2)
    with log_above_progress_bars():
        logging.getLogger("bone_seg.fit").info("saved best weights")
        logging.getLogger("bone_seg.fit").debug("a detail for the log file only")
    bar.close()
    text = terminal.getvalue()
    before, _, after = text.partition("saved best weights\n")
    assert after, text
    assert before.rstrip(" ").endswith("\r")  # the bar was cleared first ...
    assert "Epoch 0" in after  # ... and drawn again below the line
    assert "a detail" not in text
    assert root.handlers == [console]  # back as it was


def test_lightning_messages_once_and_no_advertisement(caplog):
    import lightning.pytorch  # noqa: F401  (adds Lightning's own console handler)

    tidy_library_logging()
    assert not [h for h in logging.getLogger("lightning").handlers
                if type(h) is logging.StreamHandler]
    with caplog.at_level(logging.INFO):
        rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
        rank_zero.info("💡 Tip: For seamless cloud logging and experiment tracking, try ...")
        rank_zero.info("GPU available: False, used: False")
        logging.getLogger("mlflow.store.db.utils").info("Creating initial MLflow database tables")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]

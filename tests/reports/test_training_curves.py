"""The training-curves figure draws the epoch log's values at the epochs the log prints."""

from bone_seg.reports.training_curves import curves_figure

NAMES = ["background", "bone", "pores"]


def _entry(epoch, best, validated=True):
    metrics = {"train/loss": 1.0 / (epoch + 1), "train/miou": 0.5 + 0.1 * epoch}
    if validated:
        metrics.update({"val/loss": 0.9 / (epoch + 1), "val/miou": 0.4 + 0.1 * epoch})
        metrics.update({f"val/iou_{n}": 0.3 + 0.1 * epoch + 0.01 * i for i, n in enumerate(NAMES)})
    return {"epoch": epoch, "is_best": best, "metrics": metrics}


def test_curves_are_the_logged_values_at_epochs_counted_from_one():
    history = [_entry(0, True), _entry(1, False, validated=False), _entry(2, True)]
    fig = curves_figure(history, NAMES)
    loss_ax, iou_ax = fig.axes
    lines = {line.get_label(): line for line in iou_ax.get_lines()}
    assert list(lines["train/miou"].get_xdata()) == [1, 2, 3]
    assert list(lines["val/miou"].get_xdata()) == [1, 3]  # epoch 2 was not validated
    assert list(lines["val/miou"].get_ydata()) == [0.4, 0.4 + 0.2]
    assert list(lines["val IoU pores"].get_ydata()) == [0.32, 0.3 + 0.2 + 0.02]
    assert list(lines["best epoch 3"].get_xdata()) == [3, 3]
    loss = {line.get_label(): line for line in loss_ax.get_lines()}
    assert list(loss["val/loss"].get_ydata()) == [0.9, 0.3]

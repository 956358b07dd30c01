"""What a command's terminal shows: its own messages, each once, and nothing a user can do nothing
about.

Hydra's logging config (``conf/hydra/default.yaml``) sends every record to the console and
to the run's log. Libraries add to that when they are imported (after Hydra configured logging):
Lightning puts its own console handler on the ``lightning`` logger, so each of its messages would
show twice, and advertises a cloud logger on every fit; MLflow reports at INFO that it is
creating or migrating its database. :func:`tidy_library_logging` undoes exactly that; the
messages that matter (a library's warnings and errors) still reach the console and the log.
"""

from __future__ import annotations

import logging
import warnings

#: Deprecation notices of our dependencies on torch 2.14 that a user can do nothing about
#: (timm/smp call torch.jit at import; Lightning's pytree helper); matched by message only.
KNOWN_WARNINGS = (
    r"`torch\.jit\.(script|interface)` is deprecated",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # Lightning, wherever SLURM is installed: bone_seg's jobs reach SLURM through its launcher
    # (hydra/launcher=slurm, which runs srun itself), never by prefixing a command with srun
    r"The `srun` command is available on your system but is not used",
)
#: Log records of libraries that are advertisements, not information (matched by start)
ADVERTISEMENTS = {"lightning.pytorch.utilities.rank_zero": ("💡 Tip: For seamless cloud logging",)}
#: Loggers whose INFO records are a library's housekeeping (MLflow creating its tables, alembic)
HOUSEKEEPING = ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration")


def quiet_known_warnings() -> None:
    """Hide :data:`KNOWN_WARNINGS` on the terminal of an entry point (library use keeps them)."""
    for message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


class _DropAdvertisements(logging.Filter):
    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


def tidy_library_logging() -> None:
    """One console line per library message, no advertisements, no database housekeeping.

    Call it after the libraries are imported (they add their handlers then); idempotent.
    """
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lightning_logger = logging.getLogger(name)
        for handler in list(lightning_logger.handlers):
            if type(handler) is logging.StreamHandler:  # its own console: Hydra's prints it
                lightning_logger.removeHandler(handler)
        lightning_logger.propagate = True
    for name, starts in ADVERTISEMENTS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdvertisements) for f in logger.filters):
            logger.addFilter(_DropAdvertisements(starts))
    for name in HOUSEKEEPING:
        logging.getLogger(name).setLevel(logging.WARNING)

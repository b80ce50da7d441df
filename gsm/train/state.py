"""What a run has done (:class:`TrainState`, saved in every checkpoint) and where it stands now
(:class:`RunStatus`, for the one-line messages on Ctrl-C, SIGTERM and errors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time: float = 0.0
    # the environments the epochs ran in: [{"first_epoch": 1, world_size, device, ...}, ...]; more than one only
    # after a resume with trainer.resume_anyway=true (gsm.environment)
    environments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunStatus:
    """Where one run stands. Written by the run's stages and by its background checkpoint thread
    (:class:`gsm.train.checkpoints.Checkpointer`), read by the entry point's exit messages."""

    epoch: int | None = None  # the epoch being trained (1-based)
    checkpoint_epoch: int | None = None  # the epoch of the checkpoint on disk (complete and renamed)
    writing_epoch: int | None = None  # a checkpoint being written in the background (the run waits for it)
    defer_sigterm: bool = False  # between the end of an epoch's training and its checkpoint
    sigterm: bool = False  # a SIGTERM arrived while deferred: stop after this epoch's checkpoint

    def checkpoint_text(self) -> str:
        epoch = self.writing_epoch or self.checkpoint_epoch
        if epoch is None:
            return "no checkpoint was written yet, so a rerun starts over"
        return f"the checkpoint of epoch {epoch} is kept"

    def divergence_hint(self) -> str:
        """What to do after a NaN/inf, and which checkpoint is really on disk (never one that is not)."""
        return f"Lower optimizer.lr, or for L-softmax raise head.beta_min; {self.checkpoint_text()}"

"""Console entry points: a Ctrl-C while torch and the trainer are still being imported ends in the same
kind of one line as a Ctrl-C during training, not in a traceback (or an abort inside torch's C++ import)."""

from __future__ import annotations

import signal
import sys

INTERRUPTED = "gsm: interrupted before training started; nothing was written"


def train() -> None:
    """``gsm-train`` and ``python train.py``: the trainer (:func:`gsm.train.main`)."""
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda *_: pressed.append(1))  # held while torch imports
    try:
        from gsm.train import main
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    try:
        main()
    except KeyboardInterrupt:  # before the trainer's own handler is in place (Hydra composition)
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)

"""``python -m gsm.train``: the same entry as ``python train.py`` and ``gsm-train`` (:func:`gsm.cli.train`)."""

from gsm.cli import train

if __name__ == "__main__":
    train()

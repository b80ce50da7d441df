"""Entry point from the repository root: ``python train.py dataset=cifar100 model=wrn head=gsoftmax``."""

from gsm.cli import train

if __name__ == "__main__":
    train()

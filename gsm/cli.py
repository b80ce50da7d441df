"""Console entry points. ``--help`` is answered without importing torch or the trainer. A Ctrl-C while
torch and the trainer are still being imported ends in the same kind of one line as a Ctrl-C during
training, not in a traceback (or an abort inside torch's C++ import)."""

from __future__ import annotations

import signal
import sys

INTERRUPTED = "gsm: interrupted before training started; nothing was written"


HELP_FLAGS = ("--help", "-h", "--hydra-help")


def help_and_exit(argv: list[str]) -> None:
    """``--help`` / ``--hydra-help``: Hydra composes the config and prints the help without running any task
    function, so neither torch nor the trainer is imported (2.5 s instead of 5.1 on the development machine).
    A config that cannot be composed is one ``gsm: error:`` line, exit 2."""
    import hydra
    from hydra.errors import HydraException

    from gsm.config import CONFIG_DIR, check_overrides
    from gsm.errors import GsmError

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
    def app(cfg) -> None:  # pragma: no cover - not reached: Hydra exits after printing the help
        raise SystemExit(0)

    try:
        check_overrides([arg for arg in argv if arg not in HELP_FLAGS])  # the help of a config that exists
        app()
    except (GsmError, HydraException) as exc:  # a config check_overrides passes but Hydra cannot compose
        print(f"gsm: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0)


def check_command_line(argv: list[str]) -> None:
    """A mistyped config group or option (``head=gsofmax``), an unknown key or ``hydra.job.chdir=true``: one
    ``gsm: error:`` line and exit 2 in about a second, before torch is imported (:func:`gsm.config.check_overrides`)."""
    from gsm.config import check_overrides
    from gsm.errors import GsmError

    try:
        check_overrides(argv)
    except GsmError as exc:
        print(f"gsm: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)


def train() -> None:
    """``gsm-train``, ``python train.py`` and ``python -m gsm.train``: ``--help``, the command-line check, then the
    trainer (:func:`gsm.train.main`), with Ctrl-C one line at every point."""
    if any(arg in HELP_FLAGS for arg in sys.argv[1:]):
        help_and_exit(sys.argv[1:])
    check_command_line(sys.argv[1:])
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

"""Console entry points. ``--help`` is answered without importing torch or the trainer. A Ctrl-C or a SIGTERM
while torch and the trainer are still being imported ends in the same kind of one line as one during training
(exit 130 and 143), not in a traceback, an abort inside torch's C++ import or a silent death."""

from __future__ import annotations

import signal
import sys

INTERRUPTED = "gsm: interrupted before training started; nothing was written"
TERMINATED = "gsm: terminated (SIGTERM) before training started; nothing was written"
# a SIGTERM after the trainer's start-up where no run was training (Hydra composing, between the jobs of a sweep)
TERMINATED_IDLE = ("gsm: terminated (SIGTERM) while no run was training; runs that finished are kept: rerun the same "
                   "command to go on")


class StartupTerminated(BaseException):
    """SIGTERM before the trainer is imported (like KeyboardInterrupt: no ``except Exception`` swallows it)."""


HELP_FLAGS = ("--help", "-h", "--hydra-help")


def help_and_exit(argv: list[str]) -> None:
    """``--help`` / ``--hydra-help``: the help of the config composed with the command line, without torch or the
    trainer. ``--help`` with gsm's own configs is rendered here from gsm's help template (:func:`gsm_help`: the same
    text as Hydra's, without Hydra listing every group's options through ~100 compositions); anything else (another
    config folder, ``--hydra-help``) is Hydra's. A config that cannot be composed is one ``gsm: error:`` line, exit 2."""
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from gsm.config import CONFIG_DIR, check_overrides
    from gsm.errors import GsmError

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
    def app(cfg) -> None:  # pragma: no cover - not reached: Hydra exits after printing the help
        raise SystemExit(0)

    try:
        check_overrides([arg for arg in argv if arg not in HELP_FLAGS])  # the help of a config that exists
        text = gsm_help(argv)
        if text is None:
            app()
        else:
            print(text)
    except (GsmError, HydraException, OmegaConfBaseException) as exc:  # check_overrides passed, Hydra cannot compose
        print(f"gsm: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0)


def gsm_help(argv: list[str]) -> str | None:
    """``python train.py --help [overrides]`` with gsm's configs: gsm's help template (gsm/configs/hydra/help/gsm.yaml)
    with the composed config's values and the config groups, as Hydra's ``app_help`` renders it; None where Hydra's
    own help applies (``--hydra-help``, another config folder or name, ``hydra.*`` overrides, a template that asks for
    more than the config groups)."""
    import string

    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser  # the parser @hydra.main uses (as check_overrides)

    from gsm.config import CONFIG_DIR
    from gsm.config.overrides import app_config_groups
    from gsm.runs import register_resolvers

    try:
        args = get_args_parser().parse_args(list(argv))
    except SystemExit:
        return None
    if (not args.help or args.hydra_help or args.config_path or args.config_dir or args.config_name or args.cfg
            or args.multirun or any(ov.lstrip("+~").startswith("hydra") for ov in args.overrides)):
        return None
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="train"):
        cfg = compose("train", overrides=list(args.overrides), return_hydra_config=True)
    template = cfg.hydra.help.template  # its ${...} resolve against the composed config, as in Hydra's app_help
    if any(f"${name}" in template for name in ("FLAGS_HELP", "HYDRA_CONFIG_GROUPS", "CONFIG")):
        return None
    return string.Template(template).substitute(APP_CONFIG_GROUPS=app_config_groups())


def check_sweep_needs_multirun(argv: list[str]) -> None:
    """``head.loss_reduction=mean,sum`` without ``-m``: a ConfigError naming the override and the fix (Hydra's own
    answer is a six-line "Ambiguous value" error)."""
    from hydra._internal.utils import get_args_parser  # the parser @hydra.main uses (as gsm.config.check_overrides)
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from gsm.errors import ConfigError

    try:
        args = get_args_parser().parse_args(list(argv))
    except SystemExit:  # Hydra reports its own usage errors
        return
    parser = OverridesParser.create()
    for line in args.overrides:  # a syntax error: one line naming the override, and how to quote a value
        try:
            parser.parse_overrides([line])
        except HydraException as exc:
            why = str(exc).splitlines()[0] if str(exc) else "not an override"
            key, _, value = line.partition("=")
            raise ConfigError(f"{line}: not a valid override ({why}); a value with spaces, commas, '=', brackets or "
                              f"quotes must be quoted as a whole: {key}='{value}'") from None
    if args.multirun or args.help or args.hydra_help or args.shell_completion or args.info:
        return
    overrides = parser.parse_overrides(args.overrides)
    for ov in overrides:
        if ov.is_sweep_override():
            key, value = ov.input_line.split("=", 1) if "=" in ov.input_line else (ov.key_or_group, "")
            raise ConfigError(f"{ov.input_line} is a sweep (one run per value): add -m to run it (python train.py -m "
                              f"{ov.input_line} ...); to give {key.lstrip('+~')} one value with commas, quote it: "
                              f"{key}='{value}'")


def check_values(argv: list[str]) -> None:
    """One run of the shipped configs (no ``-m``, no other config folder or ``hydra.*`` override): compose its config
    and check every value (:func:`gsm.config.validate_config`, the check the run makes again) before torch is
    imported, so ``head.sigma=-1`` answers in about a second. Anything Hydra cannot compose is left to Hydra's own
    run, which reports it."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser  # the parser @hydra.main uses (as check_overrides)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from gsm.config import CONFIG_DIR, validate_config
    from gsm.runs import register_resolvers

    try:
        args = get_args_parser().parse_args(list(argv))
    except SystemExit:
        return
    if (args.multirun or args.cfg or args.info or args.help or args.hydra_help or args.shell_completion
            or args.config_path or args.config_dir or args.config_name or args.experimental_rerun
            or any(ov.lstrip("+~").startswith("hydra") for ov in args.overrides)):
        return
    register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="train"):
            cfg = compose("train", overrides=list(args.overrides))
    except (HydraException, OmegaConfBaseException, ValueError):
        return
    validate_config(cfg)


def check_command_line(argv: list[str]) -> None:
    """A mistyped config group or option (``head=gsofmax``), an unknown key, ``hydra.job.chdir=true`` or a sweep
    without ``-m``: one ``gsm: error:`` line and exit 2 in about a second, before torch is imported
    (:func:`gsm.config.check_overrides`)."""
    from gsm.config import check_overrides
    from gsm.errors import GsmError

    try:
        check_sweep_needs_multirun(argv)
        check_overrides(argv)
        check_values(argv)
    except GsmError as exc:
        print(f"gsm: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)


def train() -> None:
    """``gsm-train``, ``python train.py`` and ``python -m gsm.train``: ``--help``, the command-line check, then the
    trainer (:func:`gsm.train.main`), with Ctrl-C and SIGTERM one line at every point.

    SIGTERM: during the command-line check it raises :class:`StartupTerminated`; while torch and the trainer are
    imported it is held (raising inside torch's import can abort in C++) and acted on right after; then, until a
    run's own handler takes over (:func:`gsm.train.app.stop_on_sigterm`) and again after it, it raises the
    trainer's ``Terminated``, which a run reports with its checkpoint (exit 143). Only the first SIGTERM counts: a
    second one (``kill`` of the process and of its group, gsm-tables passing one on) changes nothing."""
    try:
        previous_term = signal.signal(signal.SIGTERM, raise_once(StartupTerminated))
    except ValueError:  # not the main thread: signals are not ours to handle
        previous_term = None
    try:
        _train()
    except StartupTerminated:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(TERMINATED, file=sys.stderr)
        sys.exit(143)
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def raise_once(exc_type: type[BaseException]):
    """A SIGTERM handler that raises ``exc_type`` the first time and ignores the SIGTERMs after it."""
    seen: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if not seen:
            seen.append(signum)
            raise exc_type()

    return handler


def _train() -> None:
    if any(arg in HELP_FLAGS for arg in sys.argv[1:]):
        help_and_exit(sys.argv[1:])
    check_command_line(sys.argv[1:])
    pressed: list[int] = []
    terminated: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:  # started with Ctrl-C ignored (a shell's background job): it stays ignored
        previous = signal.signal(signal.SIGINT, lambda *_: pressed.append(1))  # held while torch imports
    held = signal.signal(signal.SIGTERM, lambda *_: terminated.append(1))
    try:
        from gsm.train import main
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, held)
    if terminated:
        raise StartupTerminated()
    if pressed:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    from gsm.train.epochs import Terminated

    signal.signal(signal.SIGTERM, raise_once(Terminated))  # what a run reports (gsm.train.app) until its own is set
    try:
        main()
    except KeyboardInterrupt:  # before the trainer's own handler is in place (Hydra composition)
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except Terminated:  # no run was training: Hydra composing, or between the jobs of a sweep
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(TERMINATED_IDLE, file=sys.stderr)
        sys.exit(143)

"""gsm-tables with its launch commands replaced by children that wait like a trainer and stop like one on a signal:
the Ctrl-C and SIGTERM tests of gsm-tables (tests/test_tables.py, tests/test_cli_identity.py) run it as
``python -c waiting_launch(...) table3 --runs DIR``."""

from __future__ import annotations


def waiting_launch(signal_name: str, exit_code: int, stopped: str, extra_group: bool = False) -> str:
    """The program: a first child prints ``child: training <pid>``, sleeps, and on ``signal_name`` prints
    ``child: <stopped>, checkpoint kept`` and exits ``exit_code``; with ``extra_group`` a second command prints
    ``child: second group``. The table's data check is off (no COCO here: the launch is the subject)."""
    second = ', [sys.executable, "-c", "print(\'child: second group\')"]' if extra_group else ""
    return f"""
import sys
import gsm.data_check
import gsm.launch
import gsm.reproduce
child = '''
import os, signal, sys, time
def stop(*_):
    print("child: {stopped}, checkpoint kept", flush=True)
    sys.exit({exit_code})
signal.signal(signal.{signal_name}, stop)
print(f"child: training {{os.getpid()}}", flush=True)
time.sleep(300)
'''
gsm.launch.launch_commands = lambda *a, **k: [[sys.executable, "-c", child]{second}]
gsm.data_check.check_data = lambda *a, **k: None
sys.argv = ["gsm-tables", *sys.argv[1:]]
gsm.reproduce.cli()
"""

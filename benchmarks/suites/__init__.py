"""The subcommands of ``benchmarks/bench.py``, one module each, over the helpers in :mod:`suites.common`."""
from . import deploy, dense, eager, hand, learning, profile, train_step

SUBCOMMANDS = (eager, deploy, dense, train_step, learning, hand, profile)

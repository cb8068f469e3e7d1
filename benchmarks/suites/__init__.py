"""The subcommands of ``benchmarks/bench.py``, one module each, over the helpers in :mod:`suites.common`."""
from . import (deploy, dense, eager, fusion_precision, hand, learning, precision, precision_accuracy, profile,
               train_step)

SUBCOMMANDS = (eager, deploy, precision, precision_accuracy, dense, train_step, learning, hand, profile,
               fusion_precision)

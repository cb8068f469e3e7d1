"""Shared test helpers."""
import logging
import os
import subprocess
import sys
from typing import Optional

from torch import nn

from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_ as randomize_  # noqa: F401
from mmfastvit.models.utils.fusion_checks import relative_error  # noqa: F401


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tool(script: str, *args, cwd, env: Optional[dict] = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Runs a tool as a user does: ``python SCRIPT ARGS`` in ``cwd``, the repository importable, one thread per
    process (on a busy 2-core machine two OpenMP threads wait on each other at every op, 10x slower steps)."""
    base = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, str(script), *map(str, args)], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def check_ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``result`` if it exited 0; else a failure that shows the end of its output."""
    assert result.returncode == 0, f'exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}'
    return result


class LogRecords(logging.Handler):
    """Keeps the messages logged to the logger it is added to (``logger.addHandler(records)``)."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

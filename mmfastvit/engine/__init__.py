"""Runtime helpers around mmengine's Runner (torch and mmengine only)."""
from .checkpoint import (history_buffer_statistic, load_runner_checkpoint, mmengine_checkpoint_allowlist,
                         mmengine_checkpoint_globals)

__all__ = [
    'history_buffer_statistic', 'load_runner_checkpoint', 'mmengine_checkpoint_allowlist', 'mmengine_checkpoint_globals'
]

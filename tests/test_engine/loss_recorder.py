"""A hook the engine tests load into their training runs (``custom_imports=['loss_recorder']``): after every training
iteration, each rank appends ``{"rank", "iter", "loss", "lr"}`` as one JSON line to ``work_dir/losses.jsonl`` and
flushes, so a run killed mid-way keeps what it logged. mmengine's own log has only rank 0's loss, to 4 digits.

With ``LOSS_RECORDER_HANG_AFTER=N`` in the environment, the run stops making progress (sleeps) once iteration N is
recorded, so that a test can kill it at a known point."""
import json
import os
import os.path as osp
import time

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class LossRecorder(Hook):
    priority = 'VERY_LOW'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        record = dict(rank=runner.rank, iter=runner.iter, loss=float(outputs['loss']),
                      lr=float(runner.optim_wrapper.get_lr()['lr'][0]))
        with open(osp.join(runner.work_dir, 'losses.jsonl'), 'a') as f:
            f.write(json.dumps(record) + '\n')
            f.flush()
            os.fsync(f.fileno())
        if runner.iter == int(os.environ.get('LOSS_RECORDER_HANG_AFTER', -1)):
            time.sleep(600)

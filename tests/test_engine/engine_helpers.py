"""What the distributed and crash-resume tests share: configs that train the real classifier / detector configs on
generated data with deterministic settings, running tools/train.py and tools/dist_train.sh as a user does, and
reading the per-rank losses the ``loss_recorder`` hook writes."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys
from collections import defaultdict
from typing import Dict, List

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HERE = osp.dirname(osp.abspath(__file__))
TRAIN = osp.join(REPO, 'tools', 'train.py')
TEST = osp.join(REPO, 'tools', 'test.py')
REPARAMETERIZE = osp.join(REPO, 'tools', 'model_converters', 'reparameterize.py')
DIST_TRAIN = osp.join(REPO, 'tools', 'dist_train.sh')
T8_EPOCHS = 3  # the shared T8 run's (conftest.t8_run): the crash test kills it in epoch 3

# The ImageNet recipe with what makes two runs comparable step by step: a fixed pipeline (no random crop, flip,
# RandAugment, erasing), no Mixup / CutMix, no drop path (the T8 config has none), BatchNorm on its running statistics
# (norm_eval: per-process batch statistics would differ with the batch split), 2 iterations per epoch at batch 4.
CLASSIFIER = """
_base_ = [{base!r}]
custom_imports = dict(imports=['loss_recorder'], allow_failed_imports=False)
model = dict(backbone=dict(norm_eval=True), train_cfg=dict(_delete_=True))
train_pipeline = [dict(type='mmfastvit.LoadImageFromFile', on_corrupt='error'), dict(type='Resize', scale=(32, 32)),
                  dict(type='PackInputs')]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False, pin_memory=False,
                        dataset=dict(data_root={data_root!r}, pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_pipeline = [dict(type='mmfastvit.LoadImageFromFile'), dict(type='Resize', scale=(32, 32)), dict(type='PackInputs')]
test_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False, pin_memory=False,
                       dataset=dict(data_root={data_root!r}, pipeline=test_pipeline))
train_cfg = dict(max_epochs={max_epochs})
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end={max_epochs}, convert_to_iter_based=True),
]
custom_hooks = [dict(type='EMAHook', momentum=5e-4, priority='ABOVE_NORMAL'), dict(type='LossRecorder')]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=-1))
randomness = dict(seed=0, deterministic=True)
"""

# Mask R-CNN T8 from scratch on the generated COCO set at 128 px, no flip, fewer proposals and RoIs.
DETECTOR = """
_base_ = [{base!r}]
custom_imports = dict(imports=['loss_recorder'], allow_failed_imports=False)
model = dict(backbone=dict(init_cfg=None, norm_eval=True),
             train_cfg=dict(rpn_proposal=dict(max_per_img=200), rcnn=dict(sampler=dict(num=64))))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root={data_root!r}, pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
train_cfg = dict(max_epochs={max_epochs}, val_interval=100)
custom_hooks = [dict(type='LossRecorder')]
default_hooks = dict(logger=dict(interval=1))
randomness = dict(seed=0, deterministic=True)
"""


def write_config(path, template: str, base: str, data_root: str, max_epochs: int) -> str:
    with open(path, 'w') as f:
        f.write(template.format(base=osp.join(REPO, 'configs', base), data_root=str(data_root),
                                max_epochs=max_epochs))
    return str(path)


def environment() -> Dict[str, str]:
    """The tools' environment: the repository and this folder (the loss_recorder hook) importable, unbuffered
    output, one thread per process (two processes share the CI machine's two cores)."""
    path = os.pathsep.join([REPO, HERE, os.environ.get('PYTHONPATH', '')])
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run(script: str, *args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=cwd, env=environment(), capture_output=True,
                          text=True, timeout=900)


def train(config: str, work_dir, *args, cwd) -> subprocess.CompletedProcess:
    return run(TRAIN, config, '--work-dir', work_dir, *args, cwd=cwd)


def run_here(script: str, *args, cwd) -> subprocess.CompletedProcess:
    """:func:`run` in this interpreter (``helpers.run_in_process``): for runs compared with nothing that ran in
    another process (bad input, short runs checked on their own)."""
    from helpers import run_in_process
    return run_in_process(script, *args, cwd=cwd)


def train_here(config: str, work_dir, *args, cwd) -> subprocess.CompletedProcess:
    return run_here(TRAIN, config, '--work-dir', work_dir, *args, cwd=cwd)


def dist_train(config: str, work_dir, processes: int, *args, cwd) -> subprocess.CompletedProcess:
    env = dict(environment(), PYTHON=sys.executable, PORT=str(free_port()), MASTER_ADDR='127.0.0.1')
    return subprocess.run(['bash', DIST_TRAIN, config, str(processes), '--work-dir', str(work_dir), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f'exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}'
    return result


def losses(work_dir) -> Dict[int, List[dict]]:
    """rank -> its records in the order written (iteration, loss, lr)."""
    per_rank: Dict[int, List[dict]] = defaultdict(list)
    with open(osp.join(work_dir, 'losses.jsonl')) as f:
        for line in f:
            record = json.loads(line)
            per_rank[record['rank']].append(record)
    return dict(per_rank)


def toy_runner(kind: str, work_dir: str):
    """A Runner ('mmfastvit': ours, 'mmengine': mmengine's own) over a one-layer model, ready to save checkpoints."""
    import torch
    from mmengine.model import BaseModel
    from mmengine.runner import Runner as MMEngineRunner

    from mmfastvit.engine.runner import Runner

    class ToyModel(BaseModel):

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(64, 64)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            return dict(loss=self.linear(inputs).sum()) if mode == 'loss' else self.linear(inputs)

    runner_class = Runner if kind == 'mmfastvit' else MMEngineRunner
    dataset = [dict(inputs=torch.zeros(64))] * 4
    runner = runner_class(
        model=ToyModel(),
        work_dir=work_dir,
        train_dataloader=dict(dataset=dataset, sampler=dict(type='DefaultSampler', shuffle=False), batch_size=2),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        default_hooks=dict(logger=None, checkpoint=None),
        default_scope='mmengine')
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)  # train() would build it
    return runner

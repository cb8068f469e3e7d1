"""Train-step time and peak memory of Mask R-CNN with FastViT-SA12 against Mask R-CNN with mmdet's ResNet-50, CPU.

Both detectors come from ``configs/mask_rcnn_fastvit_sa12_1x.py``: the same FPN, RPN, RoI heads, training settings
(2000 RPN proposals, 512 sampled RoIs, 28x28 mask targets) and optimizer (the config's AdamW); only the backbone
differs. The R50 detector's backbone is mmdet's Mask R-CNN R50-FPN 1x one (``ResNet`` depth 50, ``frozen_stages=1``,
``norm_eval=True``) with FPN ``in_channels=[256, 512, 1024, 2048]``. Neither loads pretrained weights (timing does not
depend on them). One step is ``model.train_step``: data preprocessing (normalize, pad), forward with losses,
backward, AdamW update. Both models run the same batch (generated COCO-format images through the config's training
pipeline, resized to fit ``--size``), timed round-robin (``mmfastvit.deploy.latency.time_interleaved``) so that drift
in the machine's speed hits both alike; the ratio is taken within the run. Peak memory: each model in a fresh
subprocess, the extra resident memory of a step over the state after a first step (weights, gradients and AdamW
moments already allocated), from /proc/self VmHWM.

The load average is recorded before and after (``--max-load`` waits, up to ``--max-wait`` seconds, for the 1-minute
load to drop below a bound first): on a shared machine compare the ratio, not the absolute times. Writes
``benchmarks/results/det_train_step_cpu_<cpu>.{json,md}`` by default (<cpu>: the CPU model, e.g. ``intel-xeon``).

Example:
    .venv/bin/python benchmarks/bench.py train-step --threads 2 --max-load 1.5 --max-wait 600   # the committed figures
    .venv/bin/python benchmarks/bench.py train-step --size 320 --runs 3 --warmup 1 --out /tmp/det_step
"""
import argparse
import copy
import tempfile

import torch

from mmfastvit.datasets import make_tiny_coco
from mmfastvit.deploy.latency import load_average, machine_info, peak_extra_memory, summarize, time_interleaved

from . import common
from .common import REPO, fmt_load, num_params, row

NAME = 'train-step'
CONFIG = REPO / 'configs' / 'mask_rcnn_fastvit_sa12_1x.py'
DEFAULT_OUT = common.cpu_results('det_train_step')
MODELS = ('fastvit_sa12', 'r50')
# mmdet's Mask R-CNN R50-FPN 1x backbone (configs/_base_/models/mask-rcnn_r50_fpn.py), without the torchvision weights
R50_BACKBONE = dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
                    norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True, style='pytorch', init_cfg=None)
R50_FPN_IN = [256, 512, 1024, 2048]
MEMORY_RUNS = 2  # steps after the high-water mark is reset


def load_config():
    from mmengine.config import Config
    return Config.fromfile(str(CONFIG))


def build(name: str, cfg, seed: int):
    """The detector ``name`` and its optimizer wrapper, in train mode."""
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    if name == 'r50':
        model_cfg.backbone = copy.deepcopy(R50_BACKBONE)
        model_cfg.neck.in_channels = R50_FPN_IN
    torch.manual_seed(seed)
    model = DET_MODELS.build(model_cfg)
    model.init_weights()
    model.train()
    return model, build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))


def make_batch(cfg, args: argparse.Namespace, data_root: str) -> dict:
    """``--batch`` generated images through the config's training pipeline (resize to fit --size, no flip)."""
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    make_tiny_coco(data_root, num_train=2 * args.batch, num_val=1, size=args.size, max_objects=5, seed=args.seed)
    dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    dataset_cfg.data_root = data_root
    dataset_cfg.pipeline = [t for t in dataset_cfg.pipeline if t.type != 'RandomFlip']
    for transform in dataset_cfg.pipeline:
        if transform.type == 'Resize':
            transform.scale = (args.size, args.size)
    dataset = DATASETS.build(dataset_cfg)
    # even indices: the landscape images, as AspectRatioBatchSampler would group them
    return pseudo_collate([dataset[2 * i] for i in range(args.batch)])


def step_fn(model, optim_wrapper, batch):
    """One training step on a copy of ``batch`` (the preprocessor pads the masks in place)."""

    def step():
        with torch.inference_mode(False):  # time_interleaved runs its calls under inference mode
            return model.train_step(copy.deepcopy(batch), optim_wrapper)

    return step


def memory_child(args: argparse.Namespace) -> None:
    """Builds one detector, takes a step, then prints the peak extra memory of further steps as one JSON line."""
    cfg = load_config()
    with tempfile.TemporaryDirectory() as tmp:
        batch = make_batch(cfg, args, tmp + '/')
    model, optim_wrapper = build(args.memory_child, cfg, args.seed)
    step = step_fn(model, optim_wrapper, batch)
    step()
    memory = peak_extra_memory(step, MEMORY_RUNS)
    common.print_child_result(peak_mib=memory['peak_mib'], peak_is_extra=memory['peak_is_extra'],
                              baseline_rss_mib=memory['baseline_rss_mib'], hwm_mib=memory['hwm_mib'],
                              params=num_params(model), backbone_params=num_params(model.backbone),
                              trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad))


def measure_memory(name: str, args: argparse.Namespace) -> dict:
    return common.memory_in_child(NAME, name, ['--batch', args.batch, '--size', args.size, '--seed', args.seed,
                                               '--threads', args.threads], cwd=REPO)


def markdown(result: dict, settings: dict) -> str:
    lat, mem = result['latency'], result['memory']
    lines = [row(['detector', 'backbone params (M)', 'detector params (M)', 'median step (s)', 'p90 (s)', 'min (s)',
                  'peak extra memory per step (MiB)']), row(['---'] * 7)]
    for name, label in (('fastvit_sa12', 'Mask R-CNN FastViT-SA12'), ('r50', 'Mask R-CNN R50')):
        lines.append(row([label, f"{mem[name]['backbone_params'] / 1e6:.2f}", f"{mem[name]['params'] / 1e6:.2f}",
                          f"{lat[name]['median_ms'] / 1e3:.2f}", f"{lat[name]['p90_ms'] / 1e3:.2f}",
                          f"{lat[name]['min_ms'] / 1e3:.2f}", f"{mem[name]['peak_mib']:.0f}"]))
    ratio, mem_ratio = result['time_ratio'], result['memory_ratio']
    load = [fmt_load(la, missing='n/a') for la in (settings['load_before'], settings['load_after'])]
    lines += ['', f'SA12 / R50: train-step time {ratio:.3f} (median), peak extra memory {mem_ratio:.3f}.', '',
              f"One step = `model.train_step` (preprocess, forward with losses, backward, AdamW update) on the same "
              f"batch of {settings['batch']} generated COCO-format images resized to fit {settings['size']}x"
              f"{settings['size']} ({settings['input_shape']} after padding), the config's training settings "
              f"(2000 RPN proposals, 512 RoIs). {settings['warmup']} warm-up + {settings['runs']} timed steps per "
              f"detector, interleaved. R50: mmdet's Mask R-CNN R50-FPN 1x backbone (frozen stem and stage 1, "
              f"BatchNorm statistics frozen), so its backward skips those; FastViT trains every layer.",
              '', 'Peak memory: the extra resident memory of a step over the state after a first step (weights, '
              'gradients and AdamW moments already allocated), in a fresh process per detector.', '',
              f"Machine: {common.cpu_text(settings['machine'])}, "
              f"{settings['threads']} torch thread(s), torch {settings['machine']['torch']}, {settings['date']}; "
              f"load average (1, 5, 15 min) before {load[0]}, after {load[1]}.", '',
              common.reproduce(settings['command'])]
    return '\n'.join(lines) + '\n'


def add_parser(subparsers) -> None:
    parser = common.add_subcommand(subparsers, NAME, __doc__, main, validate)
    parser.add_argument('--batch', type=int, default=2, help='images per step (the paper: 2 per GPU). Default: 2')
    parser.add_argument('--size', type=int, default=512, help='images are resized to fit SIZE x SIZE. Default: 512')
    common.add_timing_options(parser, warmup=2, runs=10, unit='steps per detector')
    common.add_shared_options(parser, DEFAULT_OUT, load_when='before timing', memory_child=memory_child,
                              memory_metavar='MODEL', memory_optional=False)


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    common.check_at_least(parser, args, batch=1, runs=1, warmup=0, threads=1, size=64)
    if args.memory_child is not None and args.memory_child not in MODELS:
        parser.error(f'--_memory-child "{args.memory_child}" is not one of {list(MODELS)}')


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    log = common.log_stderr
    waited = common.wait_if_asked(args, log)
    load_before = load_average()
    cfg = load_config()
    with tempfile.TemporaryDirectory() as tmp:
        batch = make_batch(cfg, args, tmp + '/')
    models = {name: build(name, cfg, args.seed) for name in MODELS}
    steps = {name: step_fn(model, optim_wrapper, batch) for name, (model, optim_wrapper) in models.items()}
    input_shape = tuple(models['r50'][0].data_preprocessor(copy.deepcopy(batch), True)['inputs'].shape)
    times = time_interleaved(steps, args.warmup, args.runs, progress=lambda done, total: log(f'round {done}/{total}'))
    latency = {name: summarize(t, batch=args.batch) for name, t in times.items()}
    del models, steps
    memory = {name: measure_memory(name, args) for name in MODELS}
    load_after = load_average()
    result = dict(latency=latency, memory=memory,
                  time_ratio=latency['fastvit_sa12']['median_ms'] / latency['r50']['median_ms'],
                  memory_ratio=memory['fastvit_sa12']['peak_mib'] / memory['r50']['peak_mib'])
    settings = dict(batch=args.batch, size=args.size, input_shape=list(input_shape), warmup=args.warmup,
                    runs=args.runs, threads=torch.get_num_threads(), seed=args.seed,
                    config=str(CONFIG.relative_to(REPO)),
                    r50_backbone=R50_BACKBONE, load_before=load_before, load_after=load_after,
                    wait_for_load=waited, machine=machine_info(), date=common.utc_now(), command=args._command,
                    memory_child_env=common.MEMORY_CHILD_ENV)
    text = markdown(result, settings)
    print(text, flush=True)
    paths = common.write_results(args.out, dict(settings=settings, results=result),
                                 '# Mask R-CNN train step: FastViT-SA12 vs ResNet-50 (CPU)\n\n' + text)
    log(f'wrote {paths[0]} and {paths[1]}')
    return 0

"""The mmfastvit tour on embedded defaults: needs no data, no weights and no arguments.

For every FastViT variant it builds the classifier backbone, gives its BatchNorms and layer scales non-trivial
values, fuses it to the reference form (as Apple / timm do) and to our full form, and checks each against the train
form; then it saves a fused checkpoint, loads it into a model built with ``deploy=True``, and builds the backbone
from each OpenMMLab registry scope.

    python tools/demo.py [--variants t8 sa12] [--size 256] [--work-dir work_dirs/demo]
"""
import argparse
import os
import os.path as osp
import tempfile

import torch
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from torch import nn

from mmfastvit.models import FastViT
from mmfastvit.testing import randomize_fusable_state_, relative_error


def params_m(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def tour_variants(variants, size, logger):
    logger.info(f'FastViT classifier backbones (stem -> 4 stages -> final_conv) at {size}x{size}, batch 1')
    header = f'{"variant":8}{"params M":>10}{"ref-fused M":>13}{"full-fused M":>14}{"ref rel.err":>13}' \
             f'{"full rel.err":>14}{"BN left":>9}'
    rows = [header]
    x = torch.randn(1, 3, size, size)
    for arch in variants:
        model = randomize_fusable_state_(FastViT(arch, out_indices=(4,))).eval()
        with torch.no_grad():
            expected = model(x)[0]
            n_train = params_m(model)
            ref = model.switch_to_deploy('reference')(x)[0]
            n_ref = params_m(model)
            full = model.switch_to_deploy()(x)[0]
        bn_left = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        rows.append(f'{arch:8}{n_train:>10.3f}{n_ref:>13.3f}{params_m(model):>14.3f}'
                    f'{relative_error(ref, expected):>13.1e}{relative_error(full, expected):>14.1e}{bn_left:>9}')
        logger.info(f'{arch}: fused forms agree with the train form')
    logger.info('\n' + '\n'.join(rows))


def tour_checkpoint(work_dir, logger):
    model = randomize_fusable_state_(FastViT('sa12', out_indices=(0, 1, 2, 3))).eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        expected = model(x)
    model.switch_to_deploy()
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, 'fastvit_sa12_fused.pth')
    # Written under a temporary name and renamed, so an interrupted run never leaves a truncated checkpoint.
    fd, tmp = tempfile.mkstemp(dir=work_dir, suffix='.tmp')
    os.close(fd)
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    deployed = FastViT('sa12', out_indices=(0, 1, 2, 3), deploy=True).eval()
    deployed.load_state_dict(torch.load(path, weights_only=True), strict=True)
    with torch.no_grad():
        worst = max(relative_error(a, b) for a, b in zip(deployed(x), expected))
    logger.info(f'fused SA12 checkpoint -> {path}; loaded into FastViT(deploy=True): '
                f'4 stage outputs within {worst:.1e} of the train form')


def tour_registries(logger):
    from mmengine.registry import MODELS as ROOT
    cfg = dict(type='mmfastvit.FastViT', arch='t8', out_indices=(0, 1, 2, 3))
    found = []
    for scope in ('mmpretrain', 'mmdet', 'mmseg'):
        try:
            init_default_scope(scope)
        except Exception as exc:  # the task package is not installed: the core still works without it
            found.append(f'{scope}: not installed ({type(exc).__name__})')
            continue
        model = ROOT.build(cfg)
        found.append(f'{scope}: type="mmfastvit.FastViT" -> {type(model).__name__}{model.out_channels}')
    logger.info('built from other scopes:\n  ' + '\n  '.join(found))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--variants', nargs='+', default=list(FastViT.arch_zoo), choices=list(FastViT.arch_zoo))
    parser.add_argument('--size', type=int, default=256, help='input height and width (default 256)')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    args = parser.parse_args()
    if args.size < 32 or args.size % 32:
        parser.error(f'--size {args.size}: FastViT needs a multiple of 32 (its output stride)')
    logger = MMLogger.get_instance('mmfastvit-demo', log_level='INFO')
    torch.manual_seed(0)
    tour_variants(args.variants, args.size, logger)
    tour_checkpoint(args.work_dir, logger)
    tour_registries(logger)


if __name__ == '__main__':
    main()

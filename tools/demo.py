"""The mmfastvit tour on embedded defaults: needs no data, no weights and no arguments.

For every FastViT variant it builds the classifier backbone, gives its BatchNorms and layer scales non-trivial
values, fuses it to the reference form (as Apple / timm do) and to our full form, and checks each against the train
form; then it saves a fused checkpoint, loads it into a model built with ``deploy=True``, and builds the backbone
from each OpenMMLab registry scope. Last, the classification tools: an Apple-format T8 checkpoint is converted,
reparameterized and evaluated, unfused and fused, with ``tools/test.py`` on a generated tiny ImageNet; and the deploy
tool: T8 exported to ONNX and Core ML and timed on the backends available (``tools/demo_deploy.py``); and the
Inferencers: a photo through mmseg's ``MMSegInferencer`` and a generated hand through the hand-mesh inferencer, with
their pictures under ``<work-dir>/inferencer_seg/vis/`` and ``<work-dir>/inferencer_hand/vis/``.

    python tools/demo.py [--variants t8 sa12] [--size 256] [--work-dir work_dirs/demo]
"""
import argparse
import os.path as osp
import pickle
import re
import subprocess
import sys

import torch
from mmengine.logging import MMLogger
from demo_deploy import tour_deploy  # tools/ is on sys.path when this script runs
from mmengine.registry import init_default_scope
from torch import nn

from mmfastvit.convert import mmfastvit_to_apple
from mmfastvit.fileio import atomic_save
from mmfastvit.models import FastViT
from mmfastvit.models.classifier import FastViTClassifier
from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_, relative_error

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


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
    path = osp.join(work_dir, 'fastvit_sa12_fused.pth')
    atomic_save(model.state_dict(), path)  # temporary name, then rename: never a truncated checkpoint
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


def run_tool(logger, script, *args):
    """Runs one of the repository's tools as a user would, logging the command; returns its stdout."""
    command = [sys.executable, osp.join(REPO, script), *map(str, args)]
    logger.info('$ python ' + ' '.join([script, *map(str, args)]))
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise RuntimeError(f'{script} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}')
    return done.stdout


def tour_classification(work_dir, logger, size=64):
    """Apple-format checkpoint -> converter -> reparameterize tool -> tools/test.py on a generated tiny ImageNet."""
    from mmfastvit.datasets import make_tiny_imagenet
    data = make_tiny_imagenet(osp.join(work_dir, 'tiny_imagenet'), num_classes=4, train_per_class=4,
                              val_per_class=8, size=size)
    # Stand-in for Apple's fastvit_t8.pth.tar (weights cannot be downloaded here): random but non-trivial values,
    # in Apple's key names and container.
    classifier = randomize_fusable_state_(FastViTClassifier('t8'), seed=1)
    apple = osp.join(work_dir, 'fastvit_t8.pth.tar')
    atomic_save({'state_dict': mmfastvit_to_apple(classifier.state_dict())}, apple)
    converted = osp.join(work_dir, 'fastvit_t8_in1k.pth')
    deployed = osp.join(work_dir, 'fastvit_t8_in1k_deploy.pth')
    config = 'configs/fastvit_t8_in1k.py'
    for line in run_tool(logger, 'tools/model_converters/fastvit_to_mmfastvit.py', apple, converted).splitlines():
        logger.info('  ' + line)
    for line in run_tool(logger, 'tools/model_converters/reparameterize.py', config, converted, deployed,
                         '--shape', size).splitlines()[-2:]:
        logger.info('  ' + line)

    tiny = ['--cfg-options', f'test_dataloader.dataset.data_root={data["root"]}', 'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False', f'test_dataloader.dataset.pipeline.1.scale={size * 9 // 8}',
            f'test_dataloader.dataset.pipeline.2.crop_size={size}']
    predictions, rows = {}, []
    for name, ckpt, extra in (('unfused', converted, []), ('fused', deployed, ['model.backbone.deploy=True'])):
        out = osp.join(work_dir, f'preds_{name}.pkl')
        stdout = run_tool(logger, 'tools/test.py', config, ckpt, '--work-dir', osp.join(work_dir, f'test_{name}'),
                          '--out', out, *tiny, *extra)
        top1 = re.findall(r'accuracy/top1: ([0-9.]+)', stdout)
        with open(out, 'rb') as f:
            predictions[name] = pickle.load(f)
        rows.append(f'{name:8} top-1 {top1[-1] if top1 else "?":>7} on {len(predictions[name])} images')
    same = sum(int(a['pred_label']) == int(b['pred_label'])
               for a, b in zip(predictions['unfused'], predictions['fused']))
    worst = max((a['pred_score'] - b['pred_score']).abs().max().item()
                for a, b in zip(predictions['unfused'], predictions['fused']))
    logger.info('tiny ImageNet, converted T8 (random weights over 1000 classes: the accuracy means nothing, the '
                'agreement does):\n  ' + '\n  '.join(rows)
                + f'\n  fused vs unfused: {same}/{len(predictions["fused"])} identical labels, '
                f'scores within {worst:.1e}')


def tour_inferencers(work_dir, logger):
    """One real photo through mmseg's Inferencer and one generated hand through the hand-mesh inferencer, pictures
    written, as ``demo/image_demo.py`` and ``demo/hand_demo.py`` run them. No weights can be downloaded here, so the
    models keep random weights: the pictures show the plumbing (shapes, colours, the projected mesh), not accuracy."""
    import matplotlib.cbook

    from mmfastvit.datasets.synthetic.freihand import make_tiny_freihand

    photo = matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)  # a photo matplotlib ships
    seg_dir = osp.join(work_dir, 'inferencer_seg')
    run_tool(logger, 'demo/image_demo.py', photo, 'configs/sem_fpn_fastvit_t8_ade20k_40k.py', '--out-dir', seg_dir)
    logger.info(f'mmseg.apis.MMSegInferencer (random weights): {osp.join(seg_dir, "vis", osp.basename(photo))}')

    hands = make_tiny_freihand(osp.join(work_dir, 'tiny_freihand'), num_train=1, num_eval=1)
    image = osp.join(hands['root'], 'evaluation', 'rgb', '00000000.jpg')
    hand_dir = osp.join(work_dir, 'inferencer_hand')
    stdout = run_tool(logger, 'demo/hand_demo.py', image, 'configs/hand_mesh_fastvit_sa12_freihand.py',
                      '--mano-path', hands['mano_path'], '--out-dir', hand_dir)
    logger.info('hand-mesh inferencer (random weights, the generated stand-in MANO model):\n  '
                + '\n  '.join(stdout.strip().splitlines()))


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
    tour_classification(args.work_dir, logger)
    tour_deploy(args.work_dir, logger)
    tour_inferencers(args.work_dir, logger)


if __name__ == '__main__':
    main()

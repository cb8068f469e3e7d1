"""Fuse a trained FastViT model's checkpoint into its deploy form (mmpretrain's ``deploy=True`` convention).

    python tools/model_converters/reparameterize.py configs/fastvit_t8_in1k.py work_dirs/fastvit_t8_in1k/epoch_300.pth \
        checkpoints/fastvit_t8_in1k_deploy.pth
    python tools/test.py configs/fastvit_t8_in1k.py checkpoints/fastvit_t8_in1k_deploy.pth \
        --cfg-options model.backbone.deploy=True

Works for any config whose ``model.backbone`` is FastViT (classifier, detector, segmentor). The output is written only
after the fused model's outputs were checked against the unfused model's.
"""
import argparse
import sys

from mmengine.config import DictAction

from mmfastvit.convert.reparameterize import reparameterize_checkpoint
from mmfastvit.fileio import CheckpointError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the training config of the checkpoint')
    parser.add_argument('checkpoint', help='checkpoint to fuse (a work-dir checkpoint or a converted one)')
    parser.add_argument('out', help='output path of the fused checkpoint')
    parser.add_argument('--shape', type=int, nargs='+', default=[256],
                        help='input size (H [W]) of the verification batch; defaults to 256')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    args = parser.parse_args(argv)
    if len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    shape = tuple(args.shape) * (2 // len(args.shape))
    try:
        reparameterize_checkpoint(args.config, args.checkpoint, args.out, shape=shape, cfg_options=args.cfg_options,
                                  log=print)
    except (FileNotFoundError, CheckpointError) as err:
        print(f'error: {err}\nnothing was written to {args.out}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

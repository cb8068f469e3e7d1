"""Learning checks: a config trained from scratch on CPU, on generated data, as a user trains it with
tools/train.py (shrunk with --cfg-options only), must reach a target score.

  det   Mask R-CNN FastViT-SA12 on a generated COCO-format set: bbox AP of tools/test.py on the last checkpoint
  seg   Semantic FPN FastViT-SA12 on generated ADE20K-format scenes: validation mIoU
  hand  the SA12 hand-mesh model on a generated FreiHAND-format set: validation PA-MPVPE
  cls   the FastViT-T8 ImageNet classifier on a generated ImageNet-layout set: validation top-1 (keeps the trained
        model, its config and the data in --work-dir for later steps)

Each exits 1 when its target is missed. Not tests: each takes minutes.
"""
import argparse

from . import cls, det, hand, seg

NAME = 'learning'
CHECKS = (det, seg, hand, cls)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(NAME, help=__doc__.split('\n\n')[0], description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    checks = parser.add_subparsers(dest='_check', required=True, metavar='CHECK')
    for check in CHECKS:
        check.add_parser(checks)

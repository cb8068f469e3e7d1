"""Parameters and FLOPs of every FastViT classifier, as the README's variant table reports them.

Counts the paper's classifier (stem -> four stages -> final_conv -> average pool -> 1000-way linear) in three forms:
unfused, fused as Apple / timm fuse it (``'reference'``), and fused by mmfastvit's ``'full'`` level. FLOPs follow
fvcore's convention, which the paper used: one multiply-add counts as one FLOP, convolutions and linear layers are
counted (the 1x1 ones run as ``baddbmm``: :mod:`mmfastvit.analysis`), and so are the two attention matmuls inside
``scaled_dot_product_attention`` (fvcore sees them as explicit matmuls in Apple's code); BatchNorm counts one FLOP
per element where it is left; element-wise ops are not counted. ``tools/analysis_tools/get_flops.py`` gives the
same figures for one config, with a per-module breakdown.

    .venv/bin/python benchmarks/model_complexity.py [--size 256] [--out benchmarks/results/model_complexity.md]
"""
import argparse
import os
import sys
from pathlib import Path

import torch
from torch import nn

from mmfastvit.analysis import flop_analyzer
from mmfastvit.models import FastViT, FastViTClassifier

PAPER_GFLOPS = {'t8': 0.7, 't12': 1.4, 's12': 1.8, 'sa12': 1.9, 'sa24': 3.8, 'sa36': 5.6, 'ma36': 7.9}
PAPER_TOP1 = {'t8': 76.2, 't12': 79.3, 's12': 79.9, 'sa12': 80.9, 'sa24': 82.7, 'sa36': 83.6, 'ma36': 83.9}


def gflops(model: nn.Module, size: int) -> float:
    return flop_analyzer(model.eval(), (torch.randn(1, 3, size, size),)).total() / 1e9


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--out', type=Path, default=Path(__file__).resolve().parent / 'results' / 'model_complexity.md')
    args = parser.parse_args()
    lines = [f'| variant | params (unfused) | params (reference-fused) | params (full-fused) | GFLOPs @{args.size} '
             '(ours, fvcore) | GFLOPs full-fused | paper GFLOPs | paper top-1 |', '|---' * 8 + '|']
    for arch in FastViT.arch_zoo:
        model = FastViTClassifier(arch)
        n_train, g_train = params(model), gflops(model, args.size)
        model.backbone.switch_to_deploy('reference')
        n_ref = params(model)
        model.backbone.switch_to_deploy('full')
        n_full, g_full = params(model), gflops(model, args.size)
        lines.append(f'| {arch.upper()} | {n_train:,} | {n_ref:,} | {n_full:,} | {g_train:.2f} | {g_full:.2f} | '
                     f'{PAPER_GFLOPS[arch]} | {PAPER_TOP1[arch]} |')
        print(lines[-1], flush=True)
    text = '\n'.join(lines) + f'\n\nReproduce: `.venv/bin/python {" ".join(sys.argv)}`\n'
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix('.tmp')
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(f'written to {args.out}')


if __name__ == '__main__':
    main()

"""Convert Apple's or timm's FastViT ImageNet checkpoint into an mmfastvit (mmpretrain) classifier checkpoint.

    python tools/model_converters/fastvit_to_mmfastvit.py fastvit_t8.pth.tar checkpoints/fastvit_t8_in1k.pth

The source format (Apple unfused / Apple ``_reparam`` fused / timm / mmfastvit) and the variant are detected from the
keys and shapes. Training checkpoints (timm's CheckpointSaver, DeiT's, mmengine's) are read too, with
``torch.load(weights_only=True)``; ``--ema`` converts their EMA weights. Nothing is written unless every key and shape
fits the detected variant.
"""
import argparse
import sys

from mmfastvit.convert import fastvit_to_mmfastvit
from mmfastvit.fileio import CheckpointError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='Apple *.pth.tar (unfused or _reparam), timm .pth / .safetensors, or a training '
                        'checkpoint (timm CheckpointSaver, DeiT, mmengine) holding one')
    parser.add_argument('dst', help='output .pth (mmpretrain ImageClassifier state dict)')
    parser.add_argument('--arch', help='refuse the file unless it holds this variant (t8, t12, s12, sa12, ...)')
    parser.add_argument('--ema', action=argparse.BooleanOptionalAction, default=None,
                        help='--ema: convert the EMA weights of a training checkpoint (timm state_dict_ema, DeiT '
                             'model_ema, mmengine EMAHook); --no-ema: the weights before averaging; default: the '
                             'weights the trainer saved as its model\'s')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = fastvit_to_mmfastvit(args.src, args.dst, arch=args.arch, log=print, ema=args.ema)
    except (FileNotFoundError, CheckpointError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f'error: {message}\nnothing was written to {args.dst}', file=sys.stderr)
        return 1
    if result.deploy:
        print('the checkpoint is fused: test it with --cfg-options model.backbone.deploy=True')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""One image through the hand-mesh model: the projected mesh and skeleton drawn over it, and the mesh as ``.obj``.

    python demo/hand_demo.py IMAGE CONFIG [--checkpoint CKPT] [--bbox X1 Y1 X2 Y2] [--bbox-scale S]
                             [--mano-path MANO_RIGHT.pkl | --synthetic-mano] [--out-dir work_dirs/demo]
                             [--device cpu] [--cfg-options KEY=VALUE ...]

writes ``OUT_DIR/vis/<image name>.png`` and ``OUT_DIR/meshes/<image name>.obj`` and prints what it wrote. The box is
in pixels of IMAGE (default: the whole image; see docs/hand_mesh.md, "Inference on your own image"). MANO_RIGHT.pkl
is licence-gated (https://mano.is.tue.mpg.de): ``--mano-path`` points the model at it; ``--synthetic-mano`` uses a
generated stand-in (a toy hand, for trying the tool without the file). Without ``--checkpoint`` the weights are
random. In Python: ``mmfastvit.hand.apis.hand_demo(image, config, checkpoint, bbox, out_dir, ...)``.
"""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

from mmengine.config import DictAction


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='3D hand mesh of one image: overlay PNG and .obj')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='a configs/hand_mesh_*.py config')
    parser.add_argument('--checkpoint', help='model weights (default: random weights)')
    parser.add_argument('--bbox', nargs=4, type=float, metavar=('X1', 'Y1', 'X2', 'Y2'),
                        help='hand box in image pixels (default: the whole image)')
    parser.add_argument('--bbox-scale', type=float, default=1.0, help='scale the box about its centre (default 1.0; '
                        'about 1.2-1.5 for a tight detector box)')
    mano = parser.add_mutually_exclusive_group()
    mano.add_argument('--mano-path', help='MANO_RIGHT.pkl (sets model.head.mano_path)')
    mano.add_argument('--synthetic-mano', action='store_true',
                      help='use a generated stand-in MANO model (written to OUT_DIR/MANO_SYNTHETIC.pkl)')
    parser.add_argument('--out-dir', default='work_dirs/demo', help='output folder (default work_dirs/demo)')
    parser.add_argument('--device', default='cpu', help='torch device (default cpu)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='config overrides, key=value')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    from mmfastvit.datasets.transforms import CorruptImageError
    from mmfastvit.fileio import CheckpointError
    from mmfastvit.hand.apis import hand_demo
    from mmfastvit.hand import make_synthetic_mano

    cfg_options = dict(args.cfg_options or {})
    if args.synthetic_mano:
        args.mano_path = make_synthetic_mano(osp.join(args.out_dir, 'MANO_SYNTHETIC.pkl'))
    if args.mano_path:
        cfg_options['model.head.mano_path'] = args.mano_path
    try:
        result = hand_demo(args.image, args.config, checkpoint=args.checkpoint, bbox=args.bbox,
                           out_dir=args.out_dir, device=args.device, bbox_scale=args.bbox_scale,
                           cfg_options=cfg_options)
    except (FileNotFoundError, ValueError, TypeError, CorruptImageError, CheckpointError) as err:
        print(f'hand_demo.py: error: {err}', file=sys.stderr)
        sys.exit(2)
    x1, y1, x2, y2 = result['bbox'].tolist()
    print(f'hand box ({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}) px; camera (s, tx, ty) = '
          f'({", ".join(f"{v:.3f}" for v in result["camera"])})')
    print(f'wrote {result["vis_path"]} (mesh and joints over the image)')
    print(f'wrote {result["obj_path"]} ({len(result["vertices"])} vertices, metres, wrist at the origin)')
    return result


if __name__ == '__main__':
    main()

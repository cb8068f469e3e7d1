"""Writes a tiny generated dataset in the layout a task's config reads, for smoke runs and tests.

Usage::

    python tools/dataset_converters/make_tiny_dataset.py imagenet data/tiny_imagenet --classes 4

then train with ``--cfg-options train_dataloader.dataset.data_root=data/tiny_imagenet/ ...``. One subcommand per
dataset; each is a pair (add its arguments, run it) in ``SUBCOMMANDS``.
"""
import argparse
import json
import sys
from typing import Callable, Dict, Tuple


def _add_imagenet_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--classes', type=int, default=4, help='number of classes (labels 0..N-1). Default: 4')
    parser.add_argument('--train-per-class', type=int, default=8, help='training images per class. Default: 8')
    parser.add_argument('--val-per-class', type=int, default=4, help='validation images per class. Default: 4')
    parser.add_argument('--size', type=int, default=64, help='image side in pixels. Default: 64')


def _run_imagenet(args: argparse.Namespace) -> Dict:
    from mmfastvit.datasets.synthetic import make_tiny_imagenet
    return make_tiny_imagenet(args.out_dir, num_classes=args.classes, train_per_class=args.train_per_class,
                              val_per_class=args.val_per_class, size=args.size, seed=args.seed)


def _add_ade20k_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--train', type=int, default=8, help='training images. Default: 8')
    parser.add_argument('--val', type=int, default=4, help='validation images. Default: 4')
    parser.add_argument('--size', type=int, nargs=2, default=[96, 128], metavar=('H', 'W'),
                        help='image height and width. Default: 96 128')
    parser.add_argument('--classes', type=int, nargs='+', default=[2, 3, 4, 5], metavar='ID',
                        help='ADE20K class ids (1..150) of the objects. Default: 2 3 4 5')
    parser.add_argument('--background', type=int, default=1, help='ADE20K class id of the background. Default: 1')


def _run_ade20k(args: argparse.Namespace) -> Dict:
    from mmfastvit.datasets.synthetic import make_tiny_ade20k
    return make_tiny_ade20k(args.out_dir, num_train=args.train, num_val=args.val, size=tuple(args.size),
                            classes=args.classes, background=args.background, seed=args.seed)


def _add_coco_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--train', type=int, default=8, help='training images. Default: 8')
    parser.add_argument('--val', type=int, default=4, help='validation images. Default: 4')
    parser.add_argument('--size', type=int, default=128, help='longer image side in pixels. Default: 128')
    parser.add_argument('--max-objects', type=int, default=3, help='most objects per image. Default: 3')
    parser.add_argument('--crowd-prob', type=float, default=0.25,
                        help='chance of an iscrowd=1 region per image. Default: 0.25')


def _run_coco(args: argparse.Namespace) -> Dict:
    from mmfastvit.datasets.synthetic import make_tiny_coco
    return make_tiny_coco(args.out_dir, num_train=args.train, num_val=args.val, size=args.size,
                          max_objects=args.max_objects, crowd_prob=args.crowd_prob, seed=args.seed)


def _add_freihand_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--train', type=int, default=8, help='unique training samples (x 4 versions). Default: 8')
    parser.add_argument('--eval', type=int, default=4, help='evaluation samples. Default: 4')
    parser.add_argument('--no-eval-annotations', action='store_true',
                        help='leave out evaluation_{xyz,verts,mano}.json (as in the first FreiHAND release)')
    parser.add_argument('--mano-path', default=None,
                        help='MANO_RIGHT.pkl to pose the hands with. Default: a synthetic one, written to '
                        'OUT_DIR/MANO_RIGHT.pkl')
    parser.add_argument('--size', type=int, default=224, help='image side in pixels. Default: 224')


def _run_freihand(args: argparse.Namespace) -> Dict:
    from mmfastvit.datasets.synthetic import make_tiny_freihand
    return make_tiny_freihand(args.out_dir, num_train=args.train, num_eval=args.eval,
                              eval_annotations=not args.no_eval_annotations, mano_path=args.mano_path,
                              size=args.size, seed=args.seed)


def _add_robustness_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--corruptions', nargs='+', default=None, metavar='NAME',
                        help='ImageNet-C corruptions. Default: the 15 of mCE')
    parser.add_argument('--severities', type=int, nargs='+', default=[1, 2, 3, 4, 5], metavar='S',
                        help='ImageNet-C severities (1..5). Default: 1 2 3 4 5')
    parser.add_argument('--per-class', type=int, default=1, help='images per class folder. Default: 1')
    parser.add_argument('--size', type=int, default=32, help='image side in pixels. Default: 32')
    parser.add_argument('--nested', action='store_true',
                        help='ImageNet-C in group folders (noise/gaussian_noise/...), as some mirrors have it')
    parser.add_argument('--clean', action='store_true', help='also write a tiny ImageNet under OUT_DIR/imagenet')


def _run_robustness(args: argparse.Namespace) -> Dict:
    from mmfastvit.datasets.synthetic import make_tiny_robustness
    return make_tiny_robustness(args.out_dir, corruptions=args.corruptions, severities=args.severities,
                                per_class=args.per_class, size=args.size, nested=args.nested, clean=args.clean,
                                seed=args.seed)


# name -> (help, add arguments, run); run returns a JSON-serializable summary.
SUBCOMMANDS: Dict[str, Tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Dict]]] = {
    'imagenet': ('ImageNet layout (train/<wnid>/*.JPEG, val/*.JPEG, meta/{train,val}.txt) for mmpretrain',
                 _add_imagenet_args, _run_imagenet),
    'ade20k': ('ADE20K layout (images/{training,validation}/*.jpg, annotations/{training,validation}/*.png; '
               '0 = other, 1..150 = classes) for mmseg', _add_ade20k_args, _run_ade20k),
    'coco': ('COCO layout (annotations/instances_{train,val}2017.json, {train,val}2017/*.png; polygon, RLE and '
             'crowd masks) for mmdet', _add_coco_args, _run_coco),
    'freihand': ('FreiHAND layout (training/rgb x 4 versions, training/mask, evaluation/rgb, '
                 'training_{K,mano,xyz,verts,scale}.json, evaluation_*.json) posed with MANO, for mmfastvit.hand',
                 _add_freihand_args, _run_freihand),
    'robustness': ('ImageNet-C (<corruption>/<severity>/<wnid>/), ImageNet-A and -R (<wnid>/), ImageNet-Sketch '
                   '(sketch/<wnid>/) and meta/wnids.txt, for tools/analysis_tools/robustness.py',
                   _add_robustness_args, _run_robustness),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Write a tiny generated dataset')
    subparsers = parser.add_subparsers(dest='dataset', required=True, metavar='DATASET',
                                       help=f'one of {list(SUBCOMMANDS)}')
    for name, (help_text, add_args, _) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.add_argument('out_dir', help='output directory (the data_root of the config)')
        add_args(sub)
        sub.add_argument('--seed', type=int, default=0, help='random seed; same arguments, same files. Default: 0')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        summary = SUBCOMMANDS[args.dataset][2](args)
    except ValueError as e:
        print(f'make_tiny_dataset.py {args.dataset}: error: {e}', file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())

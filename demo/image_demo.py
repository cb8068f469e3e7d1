"""One image through the OpenMMLab Inferencer of the config's task, with the picture written.

    python demo/image_demo.py IMAGE MODEL [--weights CHECKPOINT] [--out-dir DIR] [--device cpu]

MODEL is a config file (``configs/mask_rcnn_fastvit_sa12_1x.py``) or a model name (``fastvit-sa12_in1k``, see
``python -c "import mmfastvit; print(mmfastvit.list_models())"``). The config's ``default_scope`` picks the Inferencer:

==============  ===================================================  =================================================
scope           Inferencer                                           writes under ``--out-dir``
==============  ===================================================  =================================================
mmpretrain      ``mmpretrain.ImageClassificationInferencer``         ``vis/<image>`` (top classes drawn), ``preds/``
mmdet           ``mmdet.apis.DetInferencer``                         ``vis/<image>`` (boxes and masks), ``preds/``
mmseg           ``mmseg.apis.MMSegInferencer``                       ``vis/<image>`` (class colours), ``pred/``
mmfastvit       ``mmfastvit.hand.HandMeshInferencer`` (hand mesh)    ``vis/<image>.png`` (mesh drawn), ``meshes/``
==============  ===================================================  =================================================

Without ``--weights`` a config's model keeps its initialization (``init_cfg``; random where that is ``None``), which
shows the plumbing, not a useful prediction: pass a checkpoint (or ``--weights pretrained`` for a model name with
published weights) for that.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional, Sequence

SCOPES = ('mmpretrain', 'mmdet', 'mmseg', 'mmfastvit')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='image file')
    parser.add_argument('model', help='config file or mmfastvit model name')
    parser.add_argument('--weights', help='checkpoint file or URL; "pretrained" for a model name\'s published weights')
    parser.add_argument('--out-dir', default='work_dirs/demo', help='where the picture and predictions go')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1, ...')
    parser.add_argument('--bbox', type=float, nargs=4, metavar=('X1', 'Y1', 'X2', 'Y2'),
                        help='hand models: the hand\'s box in pixels (default: the whole image)')
    return parser.parse_args(argv)


def fail(message: str) -> None:
    print(f'image_demo.py: error: {message}', file=sys.stderr)
    sys.exit(2)


def resolve_config(model: str):
    """(config path, weights) for a config file or a model name."""
    if osp.isfile(model):
        return model, None
    if model.endswith('.py'):
        fail(f'config "{model}" does not exist')
    import mmfastvit
    try:
        info = mmfastvit.get_model_info(model)
    except ValueError as e:
        fail(str(e))
    return info.config, info.weights


def seg_dataset_name(cfg) -> Optional[str]:
    """mmseg's name for the config's test dataset (``ADE20KDataset`` -> ``'ade20k'``), or None if it has none.

    Without weights (or with a checkpoint that does not record its classes) ``MMSegInferencer`` labels the picture with
    Cityscapes' names; this gives it the config's own classes and palette instead."""
    from mmseg.utils.class_names import dataset_aliases

    dataset_type = str(((cfg.get('test_dataloader') or {}).get('dataset') or {}).get('type', ''))
    name = dataset_type.rsplit('.', 1)[-1].replace('Dataset', '').lower()
    known = {alias for aliases in dataset_aliases.values() for alias in aliases}
    return name if name in known else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.image):
        fail(f'image "{args.image}" does not exist')
    from mmengine.config import Config

    config, published = resolve_config(args.model)
    weights = args.weights
    if weights == 'pretrained':
        if not published:
            fail(f'"{args.model}" has no published weights; pass a checkpoint with --weights')
        weights = published
    cfg = Config.fromfile(config)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        fail(f'config "{config}" has default_scope {scope!r}; expected one of {list(SCOPES)}')
    if weights is None:
        print(f'no --weights: the model keeps its initialization from "{config}" (random unless init_cfg loads '
              'weights), so the picture shows the plumbing, not a useful prediction')

    from mmengine.registry import DefaultScope

    # An mmdet or mmseg model leaves its scope as the process's default, where the next task's transforms are not
    # found (a notebook running several tasks): each Inferencer runs under its own config's scope.
    with DefaultScope.overwrite_default_scope(scope):
        if scope == 'mmfastvit':  # the hand-mesh configs; demo/hand_demo.py has the hand-specific options
            from mmfastvit.hand.apis import hand_demo
            hand_demo(args.image, cfg, checkpoint=weights, bbox=args.bbox, out_dir=args.out_dir, device=args.device)
        else:
            if scope == 'mmpretrain':
                from mmpretrain import ImageClassificationInferencer as Inferencer
                kwargs = dict(pretrained=weights or False)
            elif scope == 'mmdet':
                from mmdet.apis import DetInferencer as Inferencer
                kwargs = dict(weights=weights)
            else:
                from mmseg.apis import MMSegInferencer as Inferencer
                kwargs = dict(weights=weights, dataset_name=seg_dataset_name(cfg))
            inferencer = Inferencer(model=cfg, device=args.device, **kwargs)
            if scope == 'mmpretrain':
                # mmpretrain's Inferencer draws into an existing show_dir; the others take out_dir and make vis/
                show_dir = osp.join(args.out_dir, 'vis')
                os.makedirs(show_dir, exist_ok=True)
                result = inferencer(args.image, show_dir=show_dir)[0]
                print(f'{result["pred_class"]} ({result["pred_score"]:.3f})')
            else:
                inferencer(args.image, out_dir=args.out_dir)
    print(f'wrote the picture under {args.out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

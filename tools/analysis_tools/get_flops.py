"""Parameters and FLOPs of a model built from an OpenMMLab config (mmpretrain, mmdet or mmseg).

FLOPs follow fvcore's convention, which the FastViT paper used: one multiply-add is one FLOP. Convolutions, linear
layers, matmuls and BatchNorms left in the graph are counted (through :func:`mmfastvit.analysis.flop_analyzer`,
which adds the ``baddbmm`` of the 1x1 convolutions); element-wise ops (activations, residual adds, softmax) are
not. ``scaled_dot_product_attention`` has no handle in mmengine, so its two matmuls (``q @ k^T`` and ``attn @ v``)
would go uncounted; this tool counts them, as fvcore counts the explicit matmuls of Apple's attention, and reports
them on their own line (``--exclude-sdpa`` leaves them out). ``benchmarks/results/model_complexity.md`` is this
tool's count of every FastViT classifier config, unfused and fused.

The model is built with random weights (the counts do not depend on them) and counted at batch 1:

- ``--scope model`` (default): what ``model(inputs, data_samples, mode='tensor')`` runs. Classifier: backbone,
  neck and head. Segmentor: backbone, neck, decode head (not the auxiliary head). Detector: backbone, neck, RPN and
  RoI heads on the proposals a random-weight RPN keeps, so the RoI part is indicative only. If that forward
  cannot be traced, the tool falls back to ``features`` and says so.
- ``--scope features``: ``model.extract_feat(inputs)``, the backbone and neck.
- ``--scope backbone``: ``model.backbone(inputs)``.

Default input: a classifier's test crop (the ``CenterCrop`` of its test pipeline: 256x256 for
``configs/fastvit_<v>_in1k.py``, the paper's Table 2 resolution; 384x384 for ``_in1k_384.py``; 224x224 for
``configs/fmvit_<v>_in1k.py``, FMViT's Table 2 resolution), else 256x256;
512x512 for segmentation (ADE20K crops); 800x1333 for detection (COCO test scale). Dense inputs are padded up to
the data preprocessor's size divisor, as at inference.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H [W]] [--cfg-options KEY=VALUE ...]
        [--deploy [--deploy-level {full,reference}]] [--scope {model,features,backbone}] [--exclude-sdpa]
        [--json OUT]
"""
import argparse
import json
import math
import os
import os.path as osp
import sys
from collections import Counter
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import DefaultScope
from torch import Tensor, nn

DEFAULT_SHAPES = {'classification': (256, 256), 'segmentation': (512, 512), 'detection': (800, 1333)}
TASK_OF_SCOPE = {'mmpretrain': 'classification', 'mmdet': 'detection', 'mmseg': 'segmentation'}
SDPA_OP = 'aten::scaled_dot_product_attention'
SDPA_KEY = 'scaled_dot_product_attention'  # the operator's name in the analyzer's by-operator table


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file path')
    parser.add_argument('--shape', type=int, nargs='+', metavar='SIZE',
                        help='input H W, or one size for a square input (default: a classifier\'s test crop, '
                        'else 256; 512 for segmentation; 800 1333 for detection)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. model.backbone.arch=sa12')
    parser.add_argument('--deploy', action='store_true', help='count the fused (reparameterized) model')
    parser.add_argument('--deploy-level', choices=['full', 'reference'], default='full',
                        help='fused form for --deploy: "full" (mmfastvit: no BatchNorm, no layer scale) or '
                        '"reference" (what Apple\'s and timm\'s reparameterize() produce; FMViT has one fused form, '
                        'the same for both). Default: full')
    parser.add_argument('--scope', choices=['model', 'features', 'backbone'], default='model',
                        help='what to count: the tensor-mode forward, extract_feat (backbone + neck), or the '
                        'backbone alone. Default: model')
    parser.add_argument('--exclude-sdpa', action='store_true',
                        help='leave the matmuls inside scaled_dot_product_attention uncounted')
    parser.add_argument('--json', metavar='OUT', help='also write the figures to this JSON file')
    args = parser.parse_args(argv)
    if not osp.isfile(args.config):
        parser.error(f'config file "{args.config}" does not exist')
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error(f'--shape takes H W or one size, got {len(args.shape)} values: {args.shape}')
    if args.shape is not None and min(args.shape) < 1:
        parser.error(f'--shape must be positive, got {args.shape}')
    return args


def load_config(path: str, cfg_options: Optional[dict]) -> Config:
    cfg = Config.fromfile(path)  # imports the config's custom_imports
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise ValueError(f'config "{path}" has no "model" entry')
    return cfg


def detect_task(cfg: Config) -> str:
    """``'classification'``, ``'detection'`` or ``'segmentation'``, from the default scope or the model's parts."""
    task = TASK_OF_SCOPE.get(cfg.get('default_scope'))
    if task is not None:
        return task
    if 'decode_head' in cfg.model:
        return 'segmentation'
    if {'rpn_head', 'roi_head', 'bbox_head'} & set(cfg.model):
        return 'detection'
    return 'classification'


def scope_of(cfg: Config, task: str) -> str:
    """The registry scope to build in: the config's ``default_scope``, else the task's package."""
    return cfg.get('default_scope') or {v: k for k, v in TASK_OF_SCOPE.items()}[task]


def build_model(cfg: Config) -> nn.Module:
    """Builds ``cfg.model`` in the current scope, with the top-level data preprocessor as the runner passes it."""
    from mmengine.registry import MODELS
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    return MODELS.build(model_cfg).eval()


def fuse(model: nn.Module, level: str) -> None:
    from mmfastvit.models.utils.reparam import Reparameterizable, reparameterize_model
    if not any(isinstance(m, Reparameterizable) for m in model.modules()):
        raise ValueError('--deploy: the model holds no reparameterizable (mmfastvit) module to fuse')
    reparameterize_model(model, level)


def fused_form(model: nn.Module) -> str:
    """The model's fused form (``'train'``, ``'reference'``, ``'full'``, ``'partial'``), or ``'n/a'``."""
    from mmfastvit.models.utils.reparam import Reparameterizable, fused_level
    if not any(isinstance(m, Reparameterizable) for m in model.modules()):
        return 'n/a'
    return fused_level(model)


def _center_crop(cfg: Config) -> Optional[Tuple[int, int]]:
    """``(H, W)`` of the test pipeline's ``CenterCrop`` (mmpretrain writes ``crop_size`` as ``(w, h)``), if any."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    for transform in dataset.get('pipeline') or cfg.get('test_pipeline') or []:
        if transform.get('type') == 'CenterCrop' and transform.get('crop_size'):
            size = transform['crop_size']
            return (size, size) if isinstance(size, int) else (size[1], size[0])
    return None


def requested_shape(cfg: Config, task: str, shape: Optional[Sequence[int]]) -> Tuple[Tuple[int, int], str]:
    """``(H, W)`` to count at and where it comes from: ``--shape``, a classifier's test crop, or the task default."""
    if shape is not None:
        return (shape[0], shape[-1]), '--shape'
    crop = _center_crop(cfg) if task == 'classification' else None
    if crop is not None:
        return crop, 'the test pipeline\'s CenterCrop'
    return DEFAULT_SHAPES[task], f'the {task} default'


def input_shape(model: nn.Module, hw: Tuple[int, int]) -> Tuple[int, int]:
    """The ``(H, W)`` fed to the model: ``hw`` padded to the data preprocessor's size divisor, as at inference."""
    preprocessor = getattr(model, 'data_preprocessor', None)
    divisor = getattr(preprocessor, 'pad_size_divisor', None) or getattr(preprocessor, 'size_divisor', None) or 1
    return tuple(int(math.ceil(s / divisor) * divisor) for s in hw)


def make_data_samples(task: str, hw: Tuple[int, int]) -> Optional[list]:
    """The one data sample a detector's tensor-mode forward reads image sizes from (other tasks need none)."""
    if task != 'detection':
        return None
    from mmdet.structures import DetDataSample
    sample = DetDataSample()
    sample.set_metainfo(dict(img_shape=hw, ori_shape=hw, pad_shape=hw, batch_input_shape=hw, scale_factor=(1., 1.)))
    return [sample]


def _flat_tensors(out: Any) -> Tuple[Tensor, ...]:
    if isinstance(out, Tensor):
        return (out,)
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return tuple(t for item in out for t in _flat_tensors(item))
    return ()


class _Counted(nn.Module):
    """The part of ``model`` to count, as a module whose forward takes only the image tensor (for tracing)."""

    def __init__(self, model: nn.Module, scope: str, data_samples: Optional[list]) -> None:
        super().__init__()
        self.model = model
        self.scope = scope
        self.data_samples = data_samples

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        if self.scope == 'backbone':
            out = self.model.backbone(inputs)
        elif self.scope == 'features':
            out = self.model.extract_feat(inputs)
        else:
            out = self.model(inputs, self.data_samples, mode='tensor')
        return _flat_tensors(out)


def analyze(model: nn.Module, scope: str, inputs: Tensor, data_samples: Optional[list], count_sdpa: bool):
    from mmfastvit.analysis import flop_analyzer
    analyzer = flop_analyzer(_Counted(model, scope, data_samples), (inputs,), count_attention=count_sdpa)
    analyzer.tracer_warnings('none')
    with torch.no_grad():
        analyzer.total()  # traces once; the queries below reuse it
    return analyzer


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count(model: nn.Module, task: str, scope: str, hw: Tuple[int, int], count_sdpa: bool) -> Dict:
    """Parameters and FLOPs of ``model`` on a ``1 x 3 x H x W`` input (``hw`` before padding), as a JSON-ready dict."""
    padded = input_shape(model, hw)
    inputs = torch.randn(1, 3, *padded)
    counted_scope, fallback_reason = scope, None
    try:
        analyzer = analyze(model, scope, inputs, make_data_samples(task, padded), count_sdpa)
    except Exception as exc:  # a tensor-mode forward that cannot be traced (or run without real data samples)
        if scope != 'model' or not hasattr(model, 'extract_feat'):
            raise
        counted_scope, fallback_reason = 'features', f'{type(exc).__name__}: {exc}'.splitlines()[0][:300]
        analyzer = analyze(model, 'features', inputs, None, count_sdpa)

    by_module = analyzer.by_module()
    uncalled = analyzer.uncalled_modules()
    parts = {}
    for name, child in model.named_children():
        key = f'model.{name}'
        parts[name] = dict(params=num_params(child), flops=int(by_module.get(key, 0)),
                           called=key in by_module and key not in uncalled)
    by_operator = {op: int(n) for op, n in sorted(analyzer.by_operator().items(), key=lambda kv: -kv[1])}
    unsupported = Counter(analyzer.unsupported_ops())
    called = [name for name, part in parts.items() if part['called']]
    what = {'model': "model.forward(mode='tensor')", 'features': 'model.extract_feat()',
            'backbone': 'model.backbone()'}[counted_scope]
    return dict(
        model_type=type(model).__name__,
        task=task,
        form=fused_form(model),
        input_shape=[1, 3, *padded],
        requested_shape=list(hw),
        scope=counted_scope,
        counted=f'{what}: {", ".join(called) or "-"}',
        counted_parts=called,
        fallback_reason=fallback_reason,
        params=dict(total=num_params(model), **{name: part['params'] for name, part in parts.items()}),
        flops=dict(total=int(analyzer.total()), **{name: part['flops'] for name, part in parts.items()}),
        flops_by_operator=by_operator,
        sdpa_counted=count_sdpa,
        sdpa_flops=by_operator.get(SDPA_KEY, 0),
        uncounted_ops=dict(sorted(unsupported.items())),
    )


def _g(flops: int) -> str:
    return f'{flops / 1e9:.3f} G'


def format_report(result: Dict) -> str:
    h, w = result['input_shape'][2:]
    shape = f'1x3x{h}x{w}, from {result["shape_source"]}'
    if list(result['requested_shape']) != [h, w]:
        shape += ' ({}x{}, padded to the data preprocessor\'s size divisor)'.format(*result['requested_shape'])
    lines = [
        f'config   {result["config"]}',
        f'model    {result["model_type"]} ({result["task"]}), form: {result["form"]}',
        f'input    {shape}',
        f'counted  {result["counted"]}',
    ]
    if result['fallback_reason']:
        lines.append(f'         (the tensor-mode forward could not be traced, so only the features are counted: '
                     f'{result["fallback_reason"]})')
    # the model's top-level parts; a part with no parameters that the counted forward did not run is left out
    ran = set(result['counted_parts'])
    names = [k for k in result['params'] if k != 'total' and (result['params'][k] or k in ran)]
    width = max([len(n) for n in names] + [len('total')])
    lines += ['', f'{"module":<{width}}  {"params":>14}  {"FLOPs":>10}', '-' * (width + 28)]
    for name in names:
        flops = _g(result['flops'][name]) if name in ran else 'not run'
        lines.append(f'{name:<{width}}  {result["params"][name]:>14,}  {flops:>10}')
    lines.append('-' * (width + 28))
    lines.append(f'{"total":<{width}}  {result["params"]["total"]:>14,}  {_g(result["flops"]["total"]):>10}')
    lines.append('')
    lines.append('FLOPs by operator: ' + ', '.join(f'{op} {_g(n)}' for op, n in result['flops_by_operator'].items()))
    if result['sdpa_counted'] and result['sdpa_flops']:
        lines.append(f'attention matmuls (scaled_dot_product_attention), included above: {_g(result["sdpa_flops"])}')
    elif SDPA_OP in result['uncounted_ops']:
        lines.append('attention matmuls (scaled_dot_product_attention): NOT counted (--exclude-sdpa)')
    uncounted = [op for op in result['uncounted_ops'] if op != SDPA_OP]  # SDPA has its own line above
    if uncounted:
        lines.append('not counted (no FLOP rule; element-wise in fvcore\'s convention): '
                     + ', '.join(op.replace('aten::', '') for op in uncounted))
    lines.append('FLOPs: fvcore convention, 1 multiply-add = 1 FLOP; params of the whole model, FLOPs of the '
                 'counted forward.')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
        task = detect_task(cfg)
        with DefaultScope.overwrite_default_scope(scope_of(cfg, task)):  # restored afterwards, for in-process callers
            model = build_model(cfg)
            if args.deploy:
                fuse(model, args.deploy_level)
            hw, source = requested_shape(cfg, task, args.shape)
            result = count(model, task, args.scope, hw, count_sdpa=not args.exclude_sdpa)
    except ValueError as exc:  # the config or the request is wrong (not a bug): say so without a traceback
        print(f'error: {exc}', file=sys.stderr)
        return 1
    result.update(config=args.config, shape_source=source)
    print(format_report(result))
    if args.json:
        out_dir = osp.dirname(osp.abspath(args.json))
        os.makedirs(out_dir, exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
            f.write('\n')
        print(f'written to {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

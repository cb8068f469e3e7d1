"""Export a FastViT or FMViT network to ONNX, Core ML (iPhone), TensorRT or TorchScript, checking every step.

:func:`export` takes a :class:`~mmfastvit.deploy.loading.Deployable` (from a config + checkpoint, or a variant) and

1. switches it to the deepest fused form (``reparameterize_model(model, 'full')``) and checks the fused outputs
   against the unfused ones on a seeded random batch;
2. builds the export form (:mod:`mmfastvit.deploy.export_form`: exact rewrites that the engines run faster) and
   checks it against the fused model;
3. exports, in a private staging folder beside the output folder;
4. runs the exported model where its engine runs here (ONNX Runtime; TorchScript; TensorRT on an NVIDIA GPU; Core ML
   only on macOS) and compares it with PyTorch; the report says when a check could not run;
5. moves the files into the output folder only when all of that passed, with a JSON report beside them.

A failure at any step leaves the output folder as it was. Imports torch and mmengine only; onnx, onnxruntime,
onnxsim, coremltools and tensorrt are imported when their backend is used.
"""
import copy
import datetime
import json
import os
import os.path as osp
import shutil
import tempfile
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .. import __version__
from ..models.utils.reparam import reparameterize_model
from ..models.utils.fusion_checks import relative_error
from .export_form import REWRITES, applied_rewrites, to_export_form
from .latency import machine_info
from .loading import INPUT_NAME, Deployable
from .runtimes import TensorRTRunner, build_tensorrt_engine, coreml_can_predict, ort_session, \
    probe, require, tensorrt_module

BACKENDS = ('onnx', 'coreml', 'tensorrt', 'torchscript')
EXPORTERS = ('torchscript', 'dynamo')
DEFAULT_OPSET = 18
# Relative error (max |a - b| / max |b|) allowed between forms. Fusion and the export rewrites change float32 rounding
# only (observed ~1e-7); a wrong rewrite is off by O(1).
FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2
SIZE_MULTIPLE = 32  # the output stride of FastViT and FMViT


class ExportError(RuntimeError):
    """An export that failed a check; nothing was written."""


def check_shape(shape: Sequence[int]) -> Tuple[int, int]:
    """``(H, W)`` from ``[S]`` or ``[H, W]``, each a positive multiple of 32.

    Raises:
        ValueError: naming the bad value.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        shape = shape * 2
    if len(shape) != 2:
        raise ValueError(f'shape {shape}: give H or H W')
    for size in shape:
        if size < SIZE_MULTIPLE or size % SIZE_MULTIPLE:
            raise ValueError(f'shape {shape[0]}x{shape[1]}: each side must be a positive multiple of {SIZE_MULTIPLE} '
                             f'(the backbone\'s output stride), {size} is not')
    return shape


def check_backend(backend: str, fp16: bool = False, exporter: str = 'torchscript', simplify: bool = False) -> None:
    """Refuses an unknown backend or one whose packages are missing, before anything is loaded or written.

    Raises:
        ValueError: unknown backend / exporter, or an option the backend does not take.
        BackendUnavailable: a package the backend needs cannot be imported (or TensorRT has no GPU).
    """
    if backend not in BACKENDS:
        raise ValueError(f'backend "{backend}" is not one of {list(BACKENDS)}')
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter "{exporter}" is not one of {list(EXPORTERS)}')
    if backend == 'tensorrt':
        tensorrt_module()  # first: without TensorRT (or a GPU) nothing else matters
    if backend in ('onnx', 'tensorrt'):
        require('onnx', f'the {backend} export')
        if exporter == 'dynamo':
            require('onnxscript', 'torch.onnx.export(dynamo=True)')
    if simplify:
        if backend not in ('onnx', 'tensorrt'):
            raise ValueError(f'--simplify applies to ONNX graphs, not to backend "{backend}"')
        require('onnxsim', 'simplifying the ONNX graph')
    if backend == 'coreml':
        require('coremltools', 'the Core ML export')
    if fp16 and backend == 'torchscript':
        raise ValueError('--fp16 is for the onnx, coreml and tensorrt backends; TorchScript keeps float32')


def _outputs(model: nn.Module, x: Tensor) -> Tuple[Tensor, ...]:
    with torch.no_grad():
        out = model(x)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _max_abs(actual: Sequence[Tensor], expected: Sequence[Tensor]) -> float:
    return max((a.float() - e.float()).abs().max().item() for a, e in zip(actual, expected))


def _compare(what: str, actual: Sequence[Tensor], expected: Sequence[Tensor], tolerance: float) -> dict:
    if len(actual) != len(expected):
        raise ExportError(f'{what}: {len(actual)} outputs, expected {len(expected)}; nothing was written')
    for a, e in zip(actual, expected):
        if tuple(a.shape) != tuple(e.shape):
            raise ExportError(f'{what}: output shape {tuple(a.shape)} differs from PyTorch\'s {tuple(e.shape)}; '
                              f'nothing was written')
    rel = relative_error([a.float() for a in actual], [e.float() for e in expected])
    result = dict(max_abs_diff=_max_abs(actual, expected), rel_error=rel, tolerance=tolerance, passed=rel <= tolerance)
    if not rel <= tolerance:
        raise ExportError(f'{what}: relative error {rel:.2e} > {tolerance:.0e} '
                          f'(max |diff| {result["max_abs_diff"]:.2e}); nothing was written')
    return result


def fuse_and_verify(deployable: Deployable, x: Tensor, rewrites: Sequence[str] = REWRITES,
                    log: Callable[[str], None] = print) -> Tuple[nn.Module, nn.Module, Tuple[Tensor, ...], dict]:
    """The fused model, its export form and the fused model's outputs on ``x``, each checked against the previous.

    Returns:
        tuple: ``(fused, export_form, fused_outputs, checks)``.
    """
    checks = {}
    level = deployable.backbone.fused_level
    model = copy.deepcopy(deployable.model).eval()
    if level == 'full':
        log('the model is already fused (level "full"): no unfused form to check it against')
        checks['fusion'] = dict(skipped=f'loaded already fused (level "{level}")')
    else:
        before = _outputs(model, x)
        reparameterize_model(model, 'full')
        checks['fusion'] = dict(from_level=level, **_compare('fused vs unfused', _outputs(model, x), before,
                                                             FP32_TOLERANCE))
        log(f'fused "{level}" -> "full": relative error {checks["fusion"]["rel_error"]:.1e} vs the unfused outputs')
    fused_out = _outputs(model, x)
    form = to_export_form(model, rewrites)
    checks['export_form'] = dict(rewrites=list(rewrites), applied=applied_rewrites(form),
                                 **_compare('export form vs fused', _outputs(form, x), fused_out, FP32_TOLERANCE))
    acted = [f'{name} x{count}' for name, count in checks['export_form']['applied'].items() if count]
    log(f'export form ({", ".join(acted) or "no rewrite applies"}): relative error '
        f'{checks["export_form"]["rel_error"]:.1e} vs the fused model')
    return model, form, fused_out, checks


# ---------------------------------------------------------------------------------------------------------------------
# the backends; each writes into ``stage`` and returns (files, verification)

def _export_onnx(form: nn.Module, x: Tensor, path: str, output_names: Sequence[str], opset: int, exporter: str,
                 dynamic_batch: bool, simplify: bool, log: Callable[[str], None]) -> dict:
    onnx = require('onnx', 'the ONNX export')
    names = [INPUT_NAME, *output_names]
    kwargs = dict(input_names=[INPUT_NAME], output_names=list(output_names), opset_version=opset,
                  dynamo=exporter == 'dynamo', external_data=False, do_constant_folding=True)
    if dynamic_batch:
        if exporter == 'dynamo':
            kwargs['dynamic_shapes'] = ({0: torch.export.Dim('batch', min=1, max=1024)},)
        else:
            kwargs['dynamic_axes'] = {name: {0: 'batch'} for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the TorchScript exporter's deprecation notice, tracer warnings
        torch.onnx.export(form, (x,), path, **kwargs)
    model = onnx.load(path)
    onnx.checker.check_model(model)
    info = dict(exporter=exporter, opset=opset, dynamic_batch=dynamic_batch, simplified=False,
                nodes=len(model.graph.node))
    if simplify:
        onnxsim = require('onnxsim', 'simplifying the ONNX graph')
        simplified, ok = onnxsim.simplify(model)
        if not ok:
            raise ExportError('onnxsim could not validate the simplified graph; nothing was written')
        onnx.save(simplified, path)
        info.update(simplified=True, nodes_before_simplify=info['nodes'], nodes=len(simplified.graph.node))
    log(f'ONNX: {info["nodes"]} nodes, opset {opset}, {exporter} exporter'
        + (', batch dynamic' if dynamic_batch else '') + (', simplified with onnxsim' if simplify else ''))
    return info


def _verify_onnx(path: str, x: Tensor, expected: Sequence[Tensor], fp16: bool) -> dict:
    ok, detail = probe('onnxruntime')
    if not ok:
        return dict(verified=False, reason=f'onnxruntime is not installed ({detail})')
    try:
        session = ort_session(path, 'cpu', optimization='all')
    except Exception as err:  # e.g. an FP16 graph with kernels the CPU provider lacks
        if fp16:
            return dict(verified=False, reason=f'ONNX Runtime\'s CPU provider cannot run this FP16 graph '
                                               f'({str(err).splitlines()[0][:200]}); run it with the CUDA provider')
        raise
    feed = x.half() if fp16 else x
    outputs = [torch.from_numpy(o) for o in session.run(None, {INPUT_NAME: feed.numpy()})]
    result = _compare('ONNX Runtime vs PyTorch', outputs, expected, FP16_TOLERANCE if fp16 else FP32_TOLERANCE)
    return dict(verified=True, engine='onnxruntime (CPUExecutionProvider)', **result)


def _export_torchscript(form: nn.Module, x: Tensor, path: str, expected: Sequence[Tensor]) -> Tuple[dict, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch.jit.trace is deprecated but is what Core ML's converter reads
        traced = torch.jit.trace(form, (x,), check_trace=False)
    traced.save(path)
    loaded = torch.jit.load(path)
    result = _compare('TorchScript vs PyTorch', _outputs(loaded, x), expected, FP32_TOLERANCE)
    return dict(traced_with='torch.jit.trace'), dict(verified=True, engine='torch.jit.load', **result)


def _export_coreml(form: nn.Module, x: Tensor, path: str, output_names: Sequence[str], fp16: bool,
                   deployable: Deployable, log: Callable[[str], None]) -> dict:
    ct = require('coremltools', 'the Core ML export')
    import numpy as np
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        traced = torch.jit.trace(form, (x,), check_trace=False)
        mlmodel = ct.convert(
            traced,
            # float32 inputs and outputs as in Apple's export; the program computes in compute_precision
            inputs=[ct.TensorType(name=INPUT_NAME, shape=tuple(x.shape), dtype=np.float32)],
            outputs=[ct.TensorType(name=name, dtype=np.float32) for name in output_names],
            convert_to='mlprogram',
            compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
            minimum_deployment_target=ct.target.iOS16)
    family = type(deployable.backbone).__name__
    mlmodel.short_description = (f'{family} {deployable.kind} ({deployable.name}), fused and exported by mmfastvit '
                                 f'{__version__}')
    mlmodel.input_description[INPUT_NAME] = (f'normalized RGB image batch {tuple(x.shape)} (NCHW, ImageNet mean / std '
                                             f'applied by the caller)')
    for name in output_names:
        mlmodel.output_description[name] = 'class scores' if name == 'logits' else f'{name} feature map'
    mlmodel.user_defined_metadata['mmfastvit.source'] = json.dumps(deployable.source, default=str)
    mlmodel.save(path)
    info = dict(format='mlprogram', compute_precision='float16' if fp16 else 'float32',
                minimum_deployment_target='iOS16', **coreml_spec_summary(mlmodel.get_spec()))
    log(f'Core ML: mlprogram, {info["compute_precision"]}, iOS16+, input "{INPUT_NAME}" {tuple(x.shape)}')
    return info


_MIL_DTYPES = {10: 'float16', 11: 'float32', 12: 'float64', 13: 'bfloat16'}
_ARRAY_DTYPES = {65552: 'float16', 65568: 'float32', 65600: 'float64', 131104: 'int32'}


def coreml_spec_summary(spec) -> dict:
    """What a Core ML model spec declares: input / output shapes and types, and the element types of the program's
    floating-point constants (the weights), which show the precision it computes in."""
    def arrays(features):
        return {f.name: dict(shape=list(f.type.multiArrayType.shape), dtype=_ARRAY_DTYPES.get(
            f.type.multiArrayType.dataType, str(f.type.multiArrayType.dataType))) for f in features}

    weights: Dict[str, int] = {}
    ops: Dict[str, int] = {}
    for function in spec.mlProgram.functions.values():
        for op in function.block_specializations[function.opset].operations:
            ops[op.type] = ops.get(op.type, 0) + 1
            if op.type == 'const':
                for output in op.outputs:
                    dtype = _MIL_DTYPES.get(output.type.tensorType.dataType)
                    if dtype:
                        weights[dtype] = weights.get(dtype, 0) + 1
    return dict(specification_version=spec.specificationVersion, is_mlprogram=spec.WhichOneof('Type') == 'mlProgram',
                inputs=arrays(spec.description.input), outputs=arrays(spec.description.output),
                float_constants=weights, ops=ops)


def _verify_coreml(path: str, x: Tensor, expected: Sequence[Tensor], output_names: Sequence[str], fp16: bool) -> dict:
    can, why = coreml_can_predict()
    if not can:
        return dict(verified=False, reason=why + '; open the .mlpackage in Xcode (Performance tab) or run '
                                                 'coremltools predict on a Mac to check it')
    ct = require('coremltools', 'Core ML prediction')
    pred = ct.models.MLModel(path).predict({INPUT_NAME: x.numpy()})
    outputs = [torch.from_numpy(pred[name]).float() for name in output_names]
    result = _compare('Core ML vs PyTorch', outputs, expected, FP16_TOLERANCE if fp16 else 1e-3)
    return dict(verified=True, engine='coremltools predict (macOS)', **result)


def _export_tensorrt(onnx_path: str, engine_path: str, x: Tensor, batch: int, dynamic_batch: bool,
                     max_batch: int, expected: Sequence[Tensor], fp16: bool, workspace_gib: float,
                     log: Callable[[str], None]) -> Tuple[dict, dict]:
    trt = tensorrt_module()
    shape = tuple(x.shape)
    shapes = dict(min=shape, opt=shape, max=shape)
    if dynamic_batch:
        shapes = dict(min=(1, *shape[1:]), opt=shape, max=(max(max_batch, batch), *shape[1:]))
    plan = build_tensorrt_engine(onnx_path, INPUT_NAME, shapes, workspace_gib, log=log)
    with open(engine_path, 'wb') as f:
        f.write(plan)
    runner = TensorRTRunner(plan)
    feed = (x.half() if fp16 else x).cuda()
    outputs = runner(feed)
    torch.cuda.synchronize()
    result = _compare('TensorRT vs PyTorch', [outputs[n].float().cpu() for n in runner.outputs], expected,
                      FP16_TOLERANCE if fp16 else 1e-3)
    info = dict(tensorrt=str(trt.__version__), strongly_typed=True, precision='float16' if fp16 else 'float32',
                profile={k: list(v) for k, v in shapes.items()}, workspace_gib=workspace_gib,
                gpu=torch.cuda.get_device_name(0))
    return info, dict(verified=True, engine=f'TensorRT {trt.__version__}', **result)


# ---------------------------------------------------------------------------------------------------------------------
# staging: all or nothing

def _commit(stage: str, out_dir: str) -> List[str]:
    """Moves everything in ``stage`` into ``out_dir`` (replacing same-named entries) and removes ``stage``."""
    os.makedirs(out_dir, exist_ok=True)
    moved = []
    for name in sorted(os.listdir(stage)):
        src, dst = osp.join(stage, name), osp.join(out_dir, name)
        if osp.isdir(src) and osp.lexists(dst):  # an .mlpackage: swap directories, then drop the old one
            old = tempfile.mkdtemp(prefix=f'.{name}.old-', dir=out_dir)
            os.rmdir(old)
            os.replace(dst, old)
            os.replace(src, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(src, dst)
        moved.append(dst)
    shutil.rmtree(stage, ignore_errors=True)
    return moved


def _stage_dir(out_dir: str) -> Tuple[str, List[str]]:
    """A private folder on the same file system as ``out_dir`` and the folders created to hold it."""
    out_dir = osp.abspath(out_dir)
    parent, created = osp.dirname(out_dir), []
    probe_dir = parent
    while not osp.isdir(probe_dir):
        created.append(probe_dir)
        probe_dir = osp.dirname(probe_dir)
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f'.{osp.basename(out_dir)}.export-', dir=parent), created


def default_name(deployable: Deployable, shape: Tuple[int, int], batch: int, dynamic_batch: bool, fp16: bool) -> str:
    """``<name>_<H>x<W>_b<N>[_fp16]`` (``bdyn`` for a dynamic batch)."""
    return (f'{deployable.name}_{shape[0]}x{shape[1]}_b{"dyn" if dynamic_batch else batch}'
            + ('_fp16' if fp16 else ''))


def export(deployable: Deployable,
           backend: str,
           out_dir: str,
           shape: Sequence[int] = (256, 256),
           batch: int = 1,
           fp16: Optional[bool] = None,
           opset: int = DEFAULT_OPSET,
           exporter: str = 'torchscript',
           dynamic_batch: bool = False,
           max_batch: int = 32,
           simplify: bool = False,
           rewrites: Sequence[str] = REWRITES,
           name: Optional[str] = None,
           workspace_gib: float = 4.0,
           seed: int = 0,
           log: Callable[[str], None] = print) -> dict:
    """Fuses, exports and verifies ``deployable``; see the module docstring.

    Args:
        deployable (Deployable): From :func:`~mmfastvit.deploy.loading.load_from_config` or
            :func:`~mmfastvit.deploy.loading.from_variant`.
        backend (str): ``'onnx'``, ``'coreml'``, ``'tensorrt'`` or ``'torchscript'``.
        out_dir (str): Output folder (created; existing files of the same name are replaced).
        shape (Sequence[int]): Input ``(H, W)`` (or one size), multiples of 32. Defaults to 256x256.
        batch (int): Batch of the traced input (and of the static graph). Defaults to 1.
        fp16 (bool, optional): Half precision. Core ML defaults to FP16 (FP32 keeps a model off the Neural Engine);
            ONNX / TensorRT default to FP32 (an FP16 ONNX has FP16 inputs and outputs, and TensorRT builds an FP16
            engine from it). Not for TorchScript.
        opset (int): ONNX opset. Defaults to 18.
        exporter (str): ``'torchscript'`` (``torch.onnx.export(dynamo=False)``) or ``'dynamo'``. Defaults to
            ``'torchscript'``, which gave the faster ONNX Runtime graph here.
        dynamic_batch (bool): ONNX with a symbolic batch axis (TensorRT: a profile from 1 to ``max_batch``).
        max_batch (int): Largest batch of the TensorRT profile with ``dynamic_batch``. Defaults to 32.
        simplify (bool): Run onnxsim on the ONNX graph.
        rewrites (Sequence[str]): Export rewrites (:func:`~mmfastvit.deploy.export_form.to_export_form`).
        name (str, optional): File stem; defaults to :func:`default_name`.
        workspace_gib (float): TensorRT builder workspace.
        seed (int): Seed of the random verification batch.
        log (callable): Progress lines.

    Returns:
        dict: The report also written as ``<name>.<backend>.json``: settings, checks, files, machine.

    Raises:
        ValueError: bad backend / shape / batch / option.
        BackendUnavailable: a package the backend needs is missing (nothing was written).
        ExportError: a check failed (nothing was written).
    """
    if fp16 is None:
        fp16 = backend == 'coreml'
    check_backend(backend, fp16, exporter, simplify)
    shape = check_shape(shape)
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f'batch {batch!r} must be a positive integer')
    if dynamic_batch and backend not in ('onnx', 'tensorrt'):
        raise ValueError(f'a dynamic batch is for the onnx and tensorrt backends, not "{backend}"')
    name = name or default_name(deployable, shape, batch, dynamic_batch, fp16)
    x = torch.rand(batch, 3, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1

    fused, form, expected, checks = fuse_and_verify(deployable, x, rewrites, log)
    stage, created = _stage_dir(out_dir)
    try:
        files, info, verification = {}, {}, {}
        if backend in ('onnx', 'tensorrt'):
            onnx_model, onnx_x = (copy.deepcopy(form).half(), x.half()) if fp16 else (form, x)
            files['onnx'] = f'{name}.onnx'
            info['onnx'] = _export_onnx(onnx_model, onnx_x, osp.join(stage, files['onnx']), deployable.output_names,
                                        opset, exporter, dynamic_batch, simplify, log)
            verification['onnxruntime'] = _verify_onnx(osp.join(stage, files['onnx']), x, expected, fp16)
            if backend == 'tensorrt':
                files['engine'] = f'{name}.engine'
                info['tensorrt'], verification['tensorrt'] = _export_tensorrt(
                    osp.join(stage, files['onnx']), osp.join(stage, files['engine']), x, batch, dynamic_batch,
                    max_batch, expected, fp16, workspace_gib, log)
        elif backend == 'torchscript':
            files['torchscript'] = f'{name}.pt'
            info['torchscript'], verification['torchscript'] = _export_torchscript(
                form, x, osp.join(stage, files['torchscript']), expected)
        else:
            files['coreml'] = f'{name}.mlpackage'
            info['coreml'] = _export_coreml(form, x, osp.join(stage, files['coreml']), deployable.output_names, fp16,
                                            deployable, log)
            verification['coreml'] = _verify_coreml(osp.join(stage, files['coreml']), x, expected,
                                                    deployable.output_names, fp16)
        for engine, result in verification.items():
            log(f'{engine}: ' + (f'matches PyTorch (max |diff| {result["max_abs_diff"]:.1e}, relative '
                                 f'{result["rel_error"]:.1e})' if result['verified'] else
                                 f'NOT verified: {result["reason"]}'))
        report = dict(
            mmfastvit=__version__, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            backend=backend, name=name, kind=deployable.kind, source=deployable.source,
            input=dict(name=INPUT_NAME, shape=[batch, 3, *shape], dtype='float16' if fp16 and backend != 'coreml'
                       else 'float32', normalized_by_caller=True),
            outputs=list(deployable.output_names), fp16=fp16, fusion_level='full', checks=checks, export=info,
            verification=verification, files={k: v for k, v in files.items()}, machine=machine_info())
        report_name = f'{name}.{backend}.json'
        with open(osp.join(stage, report_name), 'w') as f:
            json.dump(report, f, indent=2, default=str)
            f.write('\n')
        moved = _commit(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in created:  # folders made only to hold the staging folder
            if osp.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        raise
    report['written'] = moved
    log('wrote ' + ', '.join(moved))
    return report

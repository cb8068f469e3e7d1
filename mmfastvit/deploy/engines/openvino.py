"""OpenVINO on the CPU in reduced precision: the ``--backend openvino`` export (an OpenVINO IR, ``.xml`` + ``.bin``,
in fp32, bf16 or int8) and the timed ``openvino-cpu``, ``openvino-cpu-bf16`` and ``openvino-cpu-int8`` backends.

* **bf16** runs where the CPU computes in bfloat16 (``avx512_bf16`` or AMX; OpenVINO reports ``BF16`` among the CPU's
  ``OPTIMIZATION_CAPABILITIES``): the IR keeps fp32 weights and asks for bf16 execution
  (``INFERENCE_PRECISION_HINT``, stored in the IR's runtime options).
* **int8** is post-training quantization with NNCF (``nncf.quantize``) on calibration images from a dataset config
  (:mod:`mmfastvit.deploy.calibration`). Layers that lose too much in int8 stay in higher precision
  (:func:`default_keep_float`, plus ``--keep-float``); what stays is reported. int8 needs the CPU's int8 dot products
  (``avx512_vnni``, ``avx_vnni`` or AMX) to be fast; without them the export is refused.

The export goes through the ONNX graph of the ONNX Runtime engine (same export form, same opset). openvino and nncf
are imported when used.
"""
import functools
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..latency import cpu_facts
from ..memory import CpuPeak
from ..runtimes import BackendUnavailable, probe, require
from ..verify import FP32_TOLERANCE, ExportError, compare, outputs
from .base import MEMORY_RUNS, Candidate, Engine, ExportJob, RunTarget, register_engine
from .onnxruntime import export_onnx

PRECISIONS = ('fp32', 'bf16', 'int8')
HINTS = {'fp32': 'f32', 'bf16': 'bf16'}  # INFERENCE_PRECISION_HINT per precision (int8: see execution_hint)
# How far a reduced-precision run may stray from PyTorch fp32 (max |diff| / max |expected|) before the export's check
# fails; the accuracy check on real images (top-1 agreement) is the stricter test.
TOLERANCES = {'fp32': FP32_TOLERANCE, 'bf16': 0.1, 'int8': 0.5}
VNNI = ('avx512_vnni', 'avx_vnni', 'amx_int8')
BF16 = ('avx512_bf16', 'amx_bf16')
WEIGHTED = ('Convolution', 'GroupConvolution', 'MatMul')
CALIBRATION_IMAGES = 300  # NNCF's default subset size


def _ov():
    return require('openvino', 'the OpenVINO engine')


@functools.lru_cache(maxsize=None)
def cpu_capabilities() -> Tuple[str, ...]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU (``'FP32'``, ``'BF16'``, ``'INT8'``, ...), asked once per
    process: every precision check and every compile reads them."""
    return tuple(_ov().Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))


def precision_unavailable(precision: str) -> Optional[str]:
    """Why ``precision`` cannot run fast on this CPU with OpenVINO, or None."""
    ok, detail = probe('openvino')
    if not ok:
        return f'the OpenVINO engine needs the `openvino` package ({detail}); pip install openvino==2026.4.1'
    facts = cpu_facts()
    features = set(facts['features'])
    caps = cpu_capabilities()
    if precision == 'bf16' and ('BF16' not in caps or not features & set(BF16)):
        return (f'this CPU ({facts["model"]}) has no bfloat16 arithmetic ({" or ".join(BF16)}; OpenVINO reports '
                f'{list(caps)}): use --precision fp32 or int8')
    if precision == 'int8':
        if 'INT8' not in caps or not features & set(VNNI):
            return (f'this CPU ({facts["model"]}) has no int8 dot-product instructions ({", ".join(VNNI)}; '
                    f'OpenVINO reports {list(caps)}): int8 would not be faster here; use --precision fp32')
        ok, detail = probe('nncf')
        if not ok:
            return f'int8 quantization needs the `nncf` package ({detail}); pip install nncf==3.4.0'
    return None


def default_precision() -> str:
    """bf16 where the CPU has it, else fp32 (int8 needs calibration images, so it is never the default)."""
    return 'bf16' if precision_unavailable('bf16') is None else 'fp32'


def execution_hint(precision: str) -> str:
    """``INFERENCE_PRECISION_HINT``: the precision's own; int8 runs the layers kept out of int8 in bf16 where the
    CPU has it, else fp32."""
    if precision == 'int8':
        return 'bf16' if precision_unavailable('bf16') is None else 'f32'
    return HINTS[precision]


def compile_model(model, precision: str, threads: Optional[int] = None):
    """An OpenVINO CPU ``CompiledModel`` of ``model`` (an ``ov.Model`` or an IR / ONNX path) for one stream of
    latency-bound inference (``threads`` intra-op threads; OpenVINO's default when None)."""
    ov = _ov()
    config = {'INFERENCE_PRECISION_HINT': execution_hint(precision), 'PERFORMANCE_HINT': 'LATENCY',
              'NUM_STREAMS': '1'}
    if threads is not None:
        config['INFERENCE_NUM_THREADS'] = int(threads)
    return ov.Core().compile_model(model, 'CPU', config)


def ov_runner(compiled, x: Tensor) -> Callable[[], list]:
    """A zero-argument callable running ``compiled`` once on ``x`` (one reused infer request, input shared, not
    copied); it returns the outputs as numpy arrays."""
    request = compiled.create_infer_request()
    feed = {0: x.contiguous().numpy()}

    def call() -> list:
        request.infer(feed, share_inputs=True)
        return [request.get_output_tensor(i).data for i in range(len(compiled.outputs))]

    return call


def run_batches(compiled, batches: Sequence[Tensor]) -> Tensor:
    """The first output of ``compiled`` on each batch, concatenated (a copy)."""
    request = compiled.create_infer_request()
    outs = []
    for x in batches:
        request.infer({0: x.contiguous().numpy()})
        outs.append(torch.from_numpy(request.get_output_tensor(0).data.copy()))
    return torch.cat(outs)


def node_names(model) -> List[str]:
    """The friendly names of ``model``'s operations."""
    return [op.get_friendly_name() for op in model.get_ops()]


def default_keep_float(model) -> List[str]:
    """The layers int8 leaves in higher precision by default: the first weighted layer, which sees the raw image, and
    the last one, which makes the logits (or the last feature map). Quantizing either costs accuracy for little time
    (the usual practice for post-training int8 of CNNs)."""
    weighted = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in WEIGHTED]
    return list(dict.fromkeys(weighted[:1] + weighted[-1:]))


def quantize(model, calibration: Sequence[Tensor], keep_float: Sequence[str] = (), transformer: bool = False,
             log: Callable[[str], None] = print) -> Tuple[object, dict]:
    """``model`` (an ``ov.Model``) quantized to int8 by NNCF on ``calibration`` (batches shaped as the model's
    input), with :func:`default_keep_float` and the operations named in ``keep_float`` left in higher precision;
    returns the quantized model and what was done (``kept_float``, ``quantized_inputs``, ``calibration_images``).

    Raises:
        ValueError: a name in ``keep_float`` is not an operation of the model.
    """
    nncf = require('nncf', 'int8 quantization')
    present = set(node_names(model))
    unknown = [name for name in keep_float if name not in present]
    if unknown:
        weighted = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in WEIGHTED]
        raise ValueError(f'--keep-float {unknown}: no such operation in the model; its weighted layers are '
                         f'{weighted[:6]} ... ({len(weighted)} in all)')
    kept = list(dict.fromkeys(default_keep_float(model) + list(keep_float)))
    options = dict(subset_size=sum(len(x) for x in calibration), fast_bias_correction=True,
                   ignored_scope=nncf.IgnoredScope(names=kept, validate=False))
    if transformer:
        options['model_type'] = nncf.ModelType.TRANSFORMER  # keeps softmax / attention arithmetic in float
    dataset = nncf.Dataset([x.contiguous().numpy() for x in calibration])
    quantized = nncf.quantize(model, dataset, **options)
    fake_quantize = [op for op in quantized.get_ops() if op.get_type_name() == 'FakeQuantize']
    info = dict(kept_float=kept, quantized_inputs=len(fake_quantize),
                calibration_images=options['subset_size'], model_type='transformer' if transformer else 'default')
    log(f'OpenVINO int8: {len(fake_quantize)} quantized tensors, kept in higher precision: {kept or "none"}')
    return quantized, info


def quantizer_sensitivity(int8_path: str, fp32_path: str, images: Sequence[Tensor], precision: str = 'fp32',
                          threads: Optional[int] = None, limit: Optional[int] = None) -> dict:
    """How much each int8 quantizer of an exported int8 IR costs: the int8 model is run on ``images`` (one batch
    each) with one ``FakeQuantize`` at a time bypassed, against the fp32 IR's logits (leave-one-out).

    Returns:
        dict: ``all`` (mean / max logit error over the max |fp32 logit|, and top-1 agreement, of the int8 model) and
        ``quantizers``: per quantizer, the same with it bypassed and its ``gain`` (the share of the mean error that
        keeping it in float removes), largest gain first; with ``limit``, only the first ``limit`` quantizers.
    """
    ov = _ov()
    core = ov.Core()

    def errors(model) -> dict:
        from ..calibration import agreement
        out = run_batches(compile_model(model, precision, threads), images)
        result = agreement(out, expected)
        return dict(mean_rel_error=result['mean_rel_error'], max_rel_error=result['max_rel_error'],
                    top1_agreement=result['top1_agreement'])

    expected = run_batches(compile_model(fp32_path, 'fp32', threads), images)
    int8 = core.read_model(int8_path)
    names = [op.get_friendly_name() for op in int8.get_ordered_ops() if op.get_type_name() == 'FakeQuantize'][:limit]
    baseline = errors(int8)
    rows = []
    for name in names:
        model = core.read_model(int8_path)
        fq = next(op for op in model.get_ordered_ops() if op.get_friendly_name() == name)
        fq.output(0).replace(fq.input_value(0))
        row = errors(model)
        row.update(quantizer=name, gain=1 - row['mean_rel_error'] / max(baseline['mean_rel_error'], 1e-12))
        rows.append(row)
    rows.sort(key=lambda r: -r['gain'])
    return dict(all=baseline, quantizers=rows, images=len(images), precision=precision)


def _has_attention(model) -> bool:
    return any(op.get_type_name() == 'Softmax' for op in model.get_ops())


def _stamp_precision(model, precision: str) -> None:
    """Stores the execution precision in the IR, so ``core.compile_model(xml, 'CPU')`` uses it by default."""
    model.set_rt_info(execution_hint(precision), ['runtime_options', 'INFERENCE_PRECISION_HINT'])


@register_engine
class OpenVinoEngine(Engine):
    name = 'openvino'
    title = 'OpenVINO'
    export_backend = 'openvino'
    precisions = PRECISIONS
    reads_onnx = True
    backends = {'openvino-cpu': 'cpu', 'openvino-cpu-bf16': 'cpu', 'openvino-cpu-int8': 'cpu'}
    backend_precision = {'openvino-cpu': 'fp32', 'openvino-cpu-bf16': 'bf16', 'openvino-cpu-int8': 'int8'}
    packages = ('openvino', 'nncf')

    # -- whether it can run here ----------------------------------------------------------------------------------

    def require(self, request) -> None:
        require('onnx', 'the OpenVINO export (through ONNX)')
        _ov()
        reason = precision_unavailable(request.precision)
        if reason:
            raise BackendUnavailable(reason)

    def why_unavailable(self, backend: str) -> Optional[str]:
        ok, detail = probe('onnx')  # the runners start from the ONNX export
        if not ok:
            return f'onnx missing ({detail})'
        return precision_unavailable(self.backend_precision[backend])

    def default_precision(self) -> str:
        return default_precision()

    # -- export, verify -------------------------------------------------------------------------------------------

    def export(self, job: ExportJob) -> None:
        ov = _ov()
        request = job.request
        precision = request.precision
        onnx_path = osp.join(job.stage, f'.{job.name}.onnx')  # intermediate: removed once converted
        onnx_info = export_onnx(job.form, job.x, onnx_path, job.deployable.output_names, request.opset,
                                request.exporter, False, False, log=lambda m: None)
        model = ov.Core().read_model(onnx_path)
        os.remove(onnx_path)
        info = dict(precision=precision, execution_hint=execution_hint(precision), openvino=ov.__version__,
                    onnx_nodes=onnx_info['nodes'], cpu=cpu_facts())
        if precision == 'int8':
            calibration = job.extra.get('calibration')
            if calibration is None:
                raise ExportError('int8 needs calibration images (--calib-config)')
            model, quant = quantize(model, calibration.batches(request.batch), request.keep_float,
                                    _has_attention(model), job.log)
            info.update(quant, calibration=calibration.source)
        _stamp_precision(model, precision)
        job.files['openvino'] = f'{job.name}.xml'
        job.files['openvino_weights'] = f'{job.name}.bin'
        ov.save_model(model, job.path('openvino'), compress_to_fp16=False)
        job.info['openvino'] = info
        job.log(f'OpenVINO IR ({precision}, executed in {info["execution_hint"]}): {job.files["openvino"]}')

    def verify(self, job: ExportJob) -> None:
        precision = job.request.precision
        compiled = compile_model(job.path('openvino'), precision)
        out = [torch.from_numpy(o.copy()) for o in ov_runner(compiled, job.x)()]
        tolerance = TOLERANCES[precision]
        result = compare(f'OpenVINO {precision} vs PyTorch fp32', out, job.expected, tolerance)
        result = dict(verified=True, engine=f'openvino (CPU, {precision})', **result)
        check = job.extra.get('check_images')
        if check is not None:
            from ..calibration import agreement
            batches = check.batches(job.request.batch)
            expected = torch.cat([outputs(job.form, x)[0] for x in batches])
            labels = check.labels[:len(expected)] if check.labels is not None else None
            accuracy = agreement(run_batches(compiled, batches), expected, labels)
            accuracy.update(source=check.source, min_agreement=job.request.min_agreement)
            result['accuracy'] = accuracy
            job.log(f'OpenVINO {precision} on {accuracy["images"]} {check.source["split"]} images: top-1 agreement '
                    f'with fp32 {accuracy["top1_agreement"]:.2%}, max logit error {accuracy["max_rel_error"]:.1e}'
                    + (f', accuracy {accuracy["accuracy"]:.2%} (fp32 {accuracy["fp32_accuracy"]:.2%})'
                       if labels is not None else ''))
            if accuracy['top1_agreement'] < job.request.min_agreement:
                raise ExportError(f'OpenVINO {precision}: top-1 agreement with fp32 {accuracy["top1_agreement"]:.2%} '
                                  f'is below --min-agreement {job.request.min_agreement:.2%} on '
                                  f'{accuracy["images"]} images; keep more layers in higher precision '
                                  f'(--keep-float) or use bf16; nothing was written')
        job.verification['openvino'] = result

    # -- timed runners --------------------------------------------------------------------------------------------

    def runner(self, backend: str, target: RunTarget) -> Tuple[Candidate, Optional[dict]]:
        ov = _ov()
        precision = self.backend_precision[backend]
        key = ('openvino', precision)
        if key not in target.cache:
            model = ov.Core().read_model(target.onnx()['path'])
            if precision == 'int8':
                calibration = target.cache.get('calibration') or _random_calibration(target)
                model, _ = quantize(model, calibration, (), _has_attention(model), log=lambda m: None)
            target.cache[key] = model
        with CpuPeak() as peak:
            compiled = compile_model(target.cache[key], precision, target.settings.threads)
            call = ov_runner(compiled, target.x)
            for _ in range(MEMORY_RUNS):
                out = call()
        check = compare(f'{target.who}: OpenVINO {precision} vs PyTorch', [torch.from_numpy(o.copy()) for o in out],
                        target.expected, TOLERANCES[precision])
        return Candidate(target.who, backend, call, 'cpu', peak.mib), check


def _random_calibration(target: RunTarget, batches: int = 4) -> List[Tensor]:
    """Seeded uniform images in [-1, 1] shaped as ``target.x``: enough to time an int8 graph, not to judge its
    accuracy (that needs real images: :mod:`mmfastvit.deploy.calibration`)."""
    generator = torch.Generator().manual_seed(target.settings.seed + 1)
    return [torch.rand(target.x.shape, generator=generator) * 2 - 1 for _ in range(batches)]

"""ONNX and ONNX Runtime: the ONNX export (``--backend onnx``; TensorRT builds from it too), its check in ONNX
Runtime's CPU provider, and the timed ``onnxruntime-cpu`` / ``onnxruntime-cuda`` backends.

onnx, onnxscript, onnxsim and onnxruntime are imported when used.
"""
import copy
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..loading import INPUT_NAME
from ..memory import MIB, CpuPeak
from ..runtimes import BackendUnavailable, probe, require
from ..verify import FP16_TOLERANCE, FP32_TOLERANCE, ExportError, compare
from .base import MEMORY_RUNS, Candidate, Engine, ExportJob, RunTarget, register_engine

ORT_OPTIMIZATIONS = ('disable', 'basic', 'extended', 'all')  # graph optimization levels


def ort_session_options(threads: Optional[int] = None, optimization: str = 'all', spinning: bool = True,
                        profile_prefix: Optional[str] = None, optimized_model_path: Optional[str] = None):
    """ONNX Runtime session options, the same for every model a benchmark compares.

    Args:
        threads (int, optional): Intra-op threads; None leaves ONNX Runtime's default (one per physical core).
        optimization (str): Graph optimization level: ``'disable'``, ``'basic'``, ``'extended'`` or ``'all'`` (the
            default, which includes the layout transformation to blocked NCHWc convolutions on x86).
        spinning (bool): Whether idle intra-op threads spin-wait for work (ONNX Runtime's default). Sessions timed
            round-robin need it off: a finished session's spinning workers take the cores the next one runs on (on
            2 busy cores, 2 sessions took 2-3x their time with it on).
        profile_prefix (str, optional): Enables ONNX Runtime's profiler, writing ``<prefix>_<date>.json``.
        optimized_model_path (str, optional): Saves the graph after ONNX Runtime's optimizations.
    """
    ort = require('onnxruntime', 'running ONNX models')
    level = ort.GraphOptimizationLevel
    levels = dict(zip(ORT_OPTIMIZATIONS, (level.ORT_DISABLE_ALL, level.ORT_ENABLE_BASIC, level.ORT_ENABLE_EXTENDED,
                                          level.ORT_ENABLE_ALL)))
    if optimization not in levels:
        raise ValueError(f'optimization "{optimization}" is not one of {list(levels)}')
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    if not spinning:
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    if optimized_model_path:
        options.optimized_model_filepath = optimized_model_path
    return options


def ort_providers(device: str) -> List[str]:
    """The execution providers for ``'cpu'`` or ``'cuda'``.

    Raises:
        BackendUnavailable: CUDA asked for and the installed ONNX Runtime has no CUDA provider.
    """
    ort = require('onnxruntime', 'running ONNX models')
    if device == 'cpu':
        return ['CPUExecutionProvider']
    if device == 'cuda':
        if 'CUDAExecutionProvider' not in ort.get_available_providers():
            raise BackendUnavailable(f'ONNX Runtime {ort.__version__} here has no CUDAExecutionProvider '
                                     f'(available: {ort.get_available_providers()}); install onnxruntime-gpu')
        return ['CUDAExecutionProvider', 'CPUExecutionProvider']
    raise ValueError(f'device "{device}" is not one of [\'cpu\', \'cuda\']')


def ort_session(path: str, device: str = 'cpu', threads: Optional[int] = None, optimization: str = 'all', **kwargs):
    """An ``InferenceSession`` for ``path`` with :func:`ort_session_options`."""
    ort = require('onnxruntime', 'running ONNX models')
    return ort.InferenceSession(str(path), ort_session_options(threads, optimization, **kwargs),
                                providers=ort_providers(device))


def ort_runner(session, inputs: Dict[str, torch.Tensor]) -> Callable[[], object]:
    """A zero-argument callable running ``session`` once on ``inputs``.

    CPU tensors are passed as numpy arrays; CUDA tensors are bound in place through I/O binding, with the outputs
    left on the device (what a deployed pipeline does), so the time is the engine's, not the host copies'.
    """
    if all(t.device.type == 'cpu' for t in inputs.values()):
        feeds = {name: t.numpy() for name, t in inputs.items()}
        return lambda: session.run(None, feeds)
    import numpy as np
    binding = session.io_binding()
    np_types = {torch.float32: np.float32, torch.float16: np.float16}
    for name, t in inputs.items():
        t = t.contiguous()
        binding.bind_input(name, 'cuda', t.device.index or 0, np_types[t.dtype], tuple(t.shape), t.data_ptr())
    for out in session.get_outputs():
        binding.bind_output(out.name, 'cuda')
    return lambda: session.run_with_iobinding(binding)


def export_onnx(form: nn.Module, x: Tensor, path: str, output_names: Sequence[str], opset: int, exporter: str,
                dynamic_batch: bool, simplify: bool, log: Callable[[str], None]) -> dict:
    """Exports ``form`` traced on ``x`` to ``path`` (input :data:`~mmfastvit.deploy.loading.INPUT_NAME`), checks the
    graph and optionally simplifies it with onnxsim; returns what it made (exporter, opset, nodes, ...).

    Raises:
        BackendUnavailable: onnx (or onnxsim) is missing.
        ExportError: onnxsim could not validate its graph.
    """
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


@register_engine
class OnnxRuntimeEngine(Engine):
    name = 'onnxruntime'
    title = 'ONNX Runtime'
    export_backend = 'onnx'
    export_options = ('simplify', 'fp16', 'dynamic_batch')
    half_inputs = True
    reads_onnx = True
    backends = {'onnxruntime-cpu': 'cpu', 'onnxruntime-cuda': 'cuda'}
    packages = ('onnx', 'onnxruntime')

    def require(self, request) -> None:
        require('onnx', f'the {request.backend} export')
        if request.exporter == 'dynamo':
            require('onnxscript', 'torch.onnx.export(dynamo=True)')
        if request.simplify:
            require('onnxsim', 'simplifying the ONNX graph')

    def why_unavailable(self, backend: str) -> Optional[str]:
        ok_ort, ort_detail = probe('onnxruntime')
        if backend == 'onnxruntime-cpu':
            ok_onnx, onnx_detail = probe('onnx')
            if not (ok_ort and ok_onnx):
                return f'onnx / onnxruntime missing ({onnx_detail if not ok_onnx else ort_detail})'
            return None
        if not ok_ort:
            return f'onnxruntime missing ({ort_detail})'
        import onnxruntime
        if 'CUDAExecutionProvider' not in onnxruntime.get_available_providers():
            return 'the installed onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu)'
        return None

    def export(self, job: ExportJob) -> None:
        request = job.request
        form, x = (copy.deepcopy(job.form).half(), job.x.half()) if request.fp16 else (job.form, job.x)
        job.files['onnx'] = f'{job.name}.onnx'
        job.info['onnx'] = export_onnx(form, x, job.path('onnx'), job.deployable.output_names, request.opset,
                                       request.exporter, request.dynamic_batch, request.simplify, job.log)

    def verify(self, job: ExportJob) -> None:
        job.verification['onnxruntime'] = self._verify(job.path('onnx'), job.x, job.expected, job.request.fp16)

    @staticmethod
    def _verify(path: str, x: Tensor, expected: Sequence[Tensor], fp16: bool) -> dict:
        ok, detail = probe('onnxruntime')
        if not ok:
            return dict(verified=False, reason=f'onnxruntime is not installed ({detail})')
        try:
            session = ort_session(path, 'cpu', optimization='all')
        except Exception as err:  # e.g. an FP16 graph with kernels the CPU provider lacks
            if fp16:
                return dict(verified=False, reason=f'ONNX Runtime\'s CPU provider cannot run this FP16 graph '
                                                   f'({str(err).splitlines()[0][:200]}); run it with the CUDA '
                                                   f'provider')
            raise
        feed = x.half() if fp16 else x
        outputs = [torch.from_numpy(o) for o in session.run(None, {INPUT_NAME: feed.numpy()})]
        result = compare('ONNX Runtime vs PyTorch', outputs, expected, FP16_TOLERANCE if fp16 else FP32_TOLERANCE)
        return dict(verified=True, engine='onnxruntime (CPUExecutionProvider)', **result)

    def runner(self, backend: str, target: RunTarget) -> Tuple[Candidate, Optional[dict]]:
        settings = target.settings
        if backend == 'onnxruntime-cpu':
            with CpuPeak() as peak:
                session = ort_session(target.onnx()['path'], 'cpu', threads=settings.threads,
                                      optimization=settings.ort_optimization, spinning=settings.ort_spinning)
                call = ort_runner(session, {INPUT_NAME: target.x})
                for _ in range(MEMORY_RUNS):
                    out = call()
            check = compare(f'{target.who}: ONNX Runtime vs PyTorch', [torch.from_numpy(o) for o in out],
                            target.expected, FP32_TOLERANCE)
            return Candidate(target.who, backend, call, 'cpu', peak.mib), check
        ort_providers('cuda')
        path, xg = target.onnx(fp16=settings.cuda_fp16)['path'], target.cuda_input()
        free_before = torch.cuda.mem_get_info()[0]
        session = ort_session(path, 'cuda')
        call = ort_runner(session, {INPUT_NAME: xg})
        for _ in range(MEMORY_RUNS):
            call()
        torch.cuda.synchronize()
        return Candidate(target.who, backend, call, 'cuda', (free_before - torch.cuda.mem_get_info()[0]) / MIB,
                         'device memory taken'), None

"""TensorRT: an engine built from the exported ONNX (``--backend tensorrt``), checked on the GPU, and the timed
``tensorrt`` backend.

TensorRT is driven through its tensor-name API (TensorRT 10 and later: ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) with device buffers from torch, so neither pycuda nor cuda-python is needed. It is imported when
used.
"""
import os.path as osp
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

from ..loading import INPUT_NAME
from ..memory import MIB
from ..runtimes import BackendUnavailable, probe, require
from ..verify import FP16_TOLERANCE, compare
from .base import ENGINES, MEMORY_RUNS, Candidate, Engine, ExportJob, RunTarget, register_engine


def tensorrt_module():
    """The ``tensorrt`` module (10 or later), or :class:`BackendUnavailable`."""
    trt = require('tensorrt', 'building and running TensorRT engines')
    major = int(str(trt.__version__).split('.')[0])
    if major < 10:
        raise BackendUnavailable(f'TensorRT {trt.__version__} is installed; the deploy tools use the tensor-name API '
                                 f'of TensorRT 10 and later')
    if not torch.cuda.is_available():
        raise BackendUnavailable('TensorRT needs an NVIDIA GPU, and torch sees none here (torch.cuda.is_available() '
                                 'is False)')
    return trt


def build_tensorrt_engine(onnx_path: str, input_name: str, shapes: Dict[str, Sequence[int]],
                          workspace_gib: float = 4.0, log: Callable[[str], None] = print) -> bytes:
    """A serialized TensorRT engine (plan) built from an ONNX file as a strongly typed network.

    The engine's precision is the ONNX model's: an FP16 ONNX gives an FP16 engine. TensorRT 11 has only strongly
    typed networks (its FP16 builder flag is gone); on TensorRT 10 the same is asked for with
    ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.

    Args:
        onnx_path (str): The ONNX model.
        input_name (str): Its image input.
        shapes (dict): ``min`` / ``opt`` / ``max`` input shapes of the optimization profile (equal for a static model).
        workspace_gib (float): Builder workspace limit. Defaults to 4.

    Raises:
        BackendUnavailable: no TensorRT >= 10 or no GPU.
        RuntimeError: the parser or the builder failed (their messages are included).
    """
    trt = tensorrt_module()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(str(trt.__version__).split('.')[0]) == 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f'TensorRT could not parse "{onnx_path}": ' + '; '.join(errors[:5]))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, tuple(shapes['min']), tuple(shapes['opt']), tuple(shapes['max']))
    config.add_optimization_profile(profile)
    log(f'building the TensorRT {trt.__version__} engine (strongly typed) from {onnx_path}')
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f'TensorRT failed to build an engine from "{onnx_path}" (see its log above)')
    return bytes(plan)


class TensorRTRunner:
    """Runs a serialized engine on CUDA tensors through the tensor-name API.

    Args:
        plan (bytes): The serialized engine.

    Call it with the input tensor (on the GPU, the engine's dtype); it returns ``{output name: tensor}``. Output
    buffers are allocated once per input shape and reused.
    """

    def __init__(self, plan: bytes) -> None:
        trt = tensorrt_module()
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(plan)
        if self.engine is None:
            raise RuntimeError('TensorRT could not deserialize the engine (built by another TensorRT version or GPU?)')
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self.inputs) != 1:
            raise RuntimeError(f'expected an engine with one input, got {self.inputs}')
        self._buffers: Dict[str, torch.Tensor] = {}
        self._shape: Optional[Tuple[int, ...]] = None

    def _torch_dtype(self, name: str) -> torch.dtype:
        trt = self._trt
        table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.bool: torch.bool}
        for attr, dtype in (('bfloat16', torch.bfloat16), ('int64', torch.int64)):
            if hasattr(trt, attr):
                table[getattr(trt, attr)] = dtype
        return table[self.engine.get_tensor_dtype(name)]

    def __call__(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        name = self.inputs[0]
        x = x.contiguous()
        if tuple(x.shape) != self._shape:
            self.context.set_input_shape(name, tuple(x.shape))
            self._buffers = {out: torch.empty(tuple(self.context.get_tensor_shape(out)), dtype=self._torch_dtype(out),
                                              device=x.device) for out in self.outputs}
            for out, buf in self._buffers.items():
                self.context.set_tensor_address(out, buf.data_ptr())
            self._shape = tuple(x.shape)
        self.context.set_tensor_address(name, x.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError('TensorRT execute_async_v3 failed')
        return self._buffers


@register_engine
class TensorRTEngine(Engine):
    name = 'tensorrt'
    title = 'TensorRT'
    export_backend = 'tensorrt'
    export_options = ('simplify', 'fp16', 'dynamic_batch')
    half_inputs = True
    reads_onnx = True
    backends = {'tensorrt': 'cuda'}
    packages = ('tensorrt',)
    plotted = ('tensorrt',)

    def require(self, request) -> None:
        tensorrt_module()  # first: without TensorRT (or a GPU) nothing else matters
        ENGINES['onnxruntime'].require(request)

    def why_unavailable(self, backend: str) -> Optional[str]:
        ok, detail = probe('tensorrt')
        return None if ok else f'tensorrt cannot be imported ({detail})'

    def export(self, job: ExportJob) -> None:
        onnx_engine = ENGINES['onnxruntime']  # the engine is built from the ONNX graph, checked first
        onnx_engine.export(job)
        onnx_engine.verify(job)
        request, shape = job.request, tuple(job.x.shape)
        shapes = dict(min=shape, opt=shape, max=shape)
        if request.dynamic_batch:
            shapes = dict(min=(1, *shape[1:]), opt=shape, max=(max(request.max_batch, request.batch), *shape[1:]))
        plan = build_tensorrt_engine(job.path('onnx'), INPUT_NAME, shapes, request.workspace_gib, log=job.log)
        job.files['engine'] = f'{job.name}.engine'
        with open(job.path('engine'), 'wb') as f:
            f.write(plan)
        trt = tensorrt_module()
        job.info['tensorrt'] = dict(tensorrt=str(trt.__version__), strongly_typed=True,
                                    precision='float16' if request.fp16 else 'float32',
                                    profile={k: list(v) for k, v in shapes.items()},
                                    workspace_gib=request.workspace_gib, gpu=torch.cuda.get_device_name(0))

    def verify(self, job: ExportJob) -> None:
        with open(job.path('engine'), 'rb') as f:
            runner = TensorRTRunner(f.read())
        fp16 = job.request.fp16
        outputs = runner((job.x.half() if fp16 else job.x).cuda())
        torch.cuda.synchronize()
        result = compare('TensorRT vs PyTorch', [outputs[n].float().cpu() for n in runner.outputs], job.expected,
                         FP16_TOLERANCE if fp16 else 1e-3)
        job.verification['tensorrt'] = dict(verified=True, engine=f'TensorRT {tensorrt_module().__version__}',
                                            **result)

    def runner(self, backend: str, target: RunTarget) -> Tuple[Candidate, Optional[dict]]:
        onnx_path, xg = target.onnx(fp16=target.settings.cuda_fp16)['path'], target.cuda_input()
        shape = tuple(xg.shape)
        plan = build_tensorrt_engine(onnx_path, INPUT_NAME, dict(min=shape, opt=shape, max=shape), log=target.log)
        with open(osp.join(target.work_dir, osp.basename(onnx_path).replace('.onnx', '.engine')), 'wb') as f:
            f.write(plan)
        free_before = torch.cuda.mem_get_info()[0]
        trt_runner = TensorRTRunner(plan)
        for _ in range(MEMORY_RUNS):
            trt_runner(xg)
        torch.cuda.synchronize()
        return Candidate(target.who, backend, lambda: trt_runner(xg), 'cuda',
                         (free_before - torch.cuda.mem_get_info()[0]) / MIB, 'device memory taken'), None

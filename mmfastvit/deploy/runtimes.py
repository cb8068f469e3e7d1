"""The inference engines the deploy tools drive: ONNX Runtime, TensorRT and Core ML.

Each engine is imported inside the function that needs it, so importing this module costs nothing and the tools say
which engine is missing instead of failing at import. TensorRT is driven through its tensor-name API (TensorRT 10 and
later: ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) with device buffers from torch, so neither
pycuda nor cuda-python is needed.
"""
import importlib
import platform
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch


class BackendUnavailable(RuntimeError):
    """An engine the request needs is not installed or cannot run here; the message says which and how to get it."""


_INSTALL_HINTS = {
    'onnx': 'pip install -r requirements/deploy.txt (onnx, onnxruntime, onnxscript)',
    'onnxruntime': 'pip install -r requirements/deploy.txt (onnxruntime; onnxruntime-gpu for the CUDA provider)',
    'onnxsim': 'pip install onnxsim==0.8.1 (requirements/deploy.txt)',
    'coremltools': 'pip install coremltools==9.0 (requirements/deploy.txt)',
    'tensorrt': 'install TensorRT 10 or 11 with its Python bindings for your CUDA (pip install tensorrt-cu12 / '
                'tensorrt-cu13 on a machine that can reach NVIDIA\'s package host), on a machine with an NVIDIA GPU',
}


def probe(module: str) -> Tuple[bool, str]:
    """``(True, version)`` if ``module`` imports, else ``(False, why)``."""
    try:
        mod = importlib.import_module(module)
    except Exception as err:  # ImportError, or OSError from a binding whose shared libraries are missing
        return False, f'{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}'
    return True, str(getattr(mod, '__version__', 'unknown'))


def require(module: str, purpose: str):
    """Imports ``module`` or raises :class:`BackendUnavailable` saying what it was needed for and how to install it."""
    ok, detail = probe(module)
    if not ok:
        raise BackendUnavailable(f'{purpose} needs the `{module}` package, which cannot be imported here ({detail}); '
                                 f'{_INSTALL_HINTS.get(module, "install it")}')
    return importlib.import_module(module)


# ---------------------------------------------------------------------------------------------------------------------
# ONNX Runtime

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
    levels = dict(disable=level.ORT_DISABLE_ALL, basic=level.ORT_ENABLE_BASIC, extended=level.ORT_ENABLE_EXTENDED,
                  all=level.ORT_ENABLE_ALL)
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


# ---------------------------------------------------------------------------------------------------------------------
# TensorRT

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


# ---------------------------------------------------------------------------------------------------------------------
# Core ML

def coreml_can_predict() -> Tuple[bool, str]:
    """Whether Core ML models can run here (macOS only; conversion works everywhere)."""
    if platform.system() != 'Darwin':
        return False, f'Core ML prediction needs macOS (this is {platform.system()})'
    return True, platform.mac_ver()[0]

"""The inference engines, one module each, registered in this order (which orders the tools' choices):

* :mod:`.pytorch`: PyTorch eager on the CPU and the GPU, and CUDA graphs (timed only);
* :mod:`.onnxruntime`: the ONNX export and ONNX Runtime (CPU and CUDA providers);
* :mod:`.openvino`: OpenVINO IRs in fp32, bf16 and int8 on x86 CPUs;
* :mod:`.coreml`: Core ML packages for the iPhone (checked on macOS only);
* :mod:`.tensorrt`: TensorRT engines built from the ONNX export (NVIDIA GPU);
* :mod:`.torchscript`: TorchScript files.

Adding an engine is one module with an :class:`~.base.Engine` subclass decorated with
:func:`~.base.register_engine`, and its import below. Importing this package needs torch only; each engine's
packages are imported when it is used.
"""
from . import pytorch, onnxruntime, openvino, coreml, tensorrt, torchscript  # noqa: F401,I001  (registration, in this order)
from .base import (ENGINES, Candidate, Engine, ExportJob, RunTarget, all_backends, available_backends, backend_engine,
                   check_backends, device_of, export_backends, export_engine, register_engine)

# The built-in engines' benchmark backends (all_backends() also lists engines registered later).
CPU_BACKENDS = tuple(all_backends('cpu'))
CUDA_BACKENDS = tuple(all_backends('cuda'))
BACKENDS = CPU_BACKENDS + CUDA_BACKENDS

__all__ = ['BACKENDS', 'CPU_BACKENDS', 'CUDA_BACKENDS', 'ENGINES', 'Candidate', 'Engine', 'ExportJob', 'RunTarget',
           'all_backends', 'available_backends', 'backend_engine', 'check_backends', 'device_of', 'export_backends',
           'export_engine', 'register_engine']

"""Deployment: fusion-checked export (ONNX, Core ML, TensorRT, TorchScript) and latency measurement.

Importing this package needs torch and mmengine only; each engine is imported when it is used.
"""
from .latency import (cpu_model, load_average, machine_info, matmul_peak, peak_extra_memory, proc_status_kib,
                      summarize, time_interleaved, wait_for_load, write_text_atomic)

__all__ = [
    'cpu_model', 'load_average', 'machine_info', 'matmul_peak', 'peak_extra_memory', 'proc_status_kib', 'summarize',
    'time_interleaved', 'wait_for_load', 'write_text_atomic'
]

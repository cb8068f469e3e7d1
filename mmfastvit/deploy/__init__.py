"""Deployment: fusion-checked export (ONNX, Core ML, TensorRT, TorchScript) and latency measurement.

* ``backbones``: the deployable backbones, found in the model registry by their ``deploy_facts``; variant names;
* ``loading``: what gets deployed (a config + checkpoint, or a variant) as a :class:`~.loading.Deployable`;
* ``export_form``: the exact rewrites the engines run faster; ``verify``: each form checked against the previous;
* ``engines/``: one module per inference engine, registered (whether it runs here, export, verify, timed runner);
* ``export``: :class:`~.export.ExportRequest` and :func:`~.export.export` (staged, all or nothing);
* ``settings``: the benchmark's options as one frozen :class:`~.settings.BenchmarkSettings`; ``cli``: their flags;
* ``benchmark``: preparing and timing networks (:func:`~.benchmark.run`); ``timm_pair``: timm's model beside ours;
  ``memory``: a candidate's peak CPU memory; ``report`` and ``plot``: the table, the files and the figure;
* ``latency``: timing and machine helpers; ``runtimes``: probing and requiring optional packages.

Importing this package needs torch and mmengine only; each engine is imported when it is used.
"""
from .latency import (cpu_model, load_average, machine_info, matmul_peak, peak_extra_memory, proc_status_kib,
                      summarize, time_interleaved, wait_for_load, write_text_atomic)

__all__ = [
    'cpu_model', 'load_average', 'machine_info', 'matmul_peak', 'peak_extra_memory', 'proc_status_kib', 'summarize',
    'time_interleaved', 'wait_for_load', 'write_text_atomic'
]

"""TorchScript: the export form traced to a ``.pt`` file (``--backend torchscript``, float32), checked with
``torch.jit.load`` (torch only)."""
import warnings

import torch

from ..verify import FP32_TOLERANCE, compare, outputs
from .base import Engine, ExportJob, register_engine


@register_engine
class TorchScriptEngine(Engine):
    name = 'torchscript'
    title = 'TorchScript'
    export_backend = 'torchscript'

    def export(self, job: ExportJob) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # torch.jit.trace is deprecated but is what Core ML's converter reads
            traced = torch.jit.trace(job.form, (job.x,), check_trace=False)
        job.files['torchscript'] = f'{job.name}.pt'
        traced.save(job.path('torchscript'))
        job.info['torchscript'] = dict(traced_with='torch.jit.trace')

    def verify(self, job: ExportJob) -> None:
        loaded = torch.jit.load(job.path('torchscript'))
        result = compare('TorchScript vs PyTorch', outputs(loaded, job.x), job.expected, FP32_TOLERANCE)
        job.verification['torchscript'] = dict(verified=True, engine='torch.jit.load', **result)

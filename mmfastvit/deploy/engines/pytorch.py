"""PyTorch: the fused model in eager mode on the CPU and the GPU, and on the GPU captured in a CUDA graph (timed only;
the checkpoint is its export)."""
import copy
from typing import Optional, Tuple

import torch

from ..memory import MIB, CpuPeak
from .base import MEMORY_RUNS, Candidate, Engine, RunTarget, register_engine


@register_engine
class PyTorchEngine(Engine):
    name = 'pytorch'
    title = 'PyTorch'
    backends = {'pytorch-cpu': 'cpu', 'pytorch-cuda': 'cuda', 'pytorch-cuda-graph': 'cuda'}
    plotted = ('pytorch-cpu', 'pytorch-cuda-graph')

    def runner(self, backend: str, target: RunTarget) -> Tuple[Candidate, Optional[dict]]:
        if backend == 'pytorch-cpu':
            x = target.x
            with CpuPeak() as peak:
                model = copy.deepcopy(target.eager).eval()
                with torch.inference_mode():
                    for _ in range(MEMORY_RUNS):
                        model(x)
            return Candidate(target.who, backend, lambda: model(x), 'cpu', peak.mib), None
        model, xg, memory = self._on_gpu(target)
        if backend == 'pytorch-cuda':
            return Candidate(target.who, backend, lambda: model(xg), 'cuda', memory, 'activations only'), None
        static_x = xg.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(3):
                model(static_x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            model(static_x)
        return Candidate(target.who, backend, graph.replay, 'cuda', memory, 'activations only'), None

    @staticmethod
    def _on_gpu(target: RunTarget):
        """The model on the GPU in the run's precision, its input, and the allocator's peak for its activations (MiB);
        shared by the eager and the CUDA graph candidates."""
        if 'pytorch-gpu' not in target.cache:
            xg = target.cuda_input()
            model = copy.deepcopy(target.eager).to('cuda', target.cuda_dtype).eval()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            with torch.inference_mode():
                for _ in range(MEMORY_RUNS):
                    model(xg)
            torch.cuda.synchronize()
            target.cache['pytorch-gpu'] = model, xg, (torch.cuda.max_memory_allocated() - base) / MIB
        return target.cache['pytorch-gpu']

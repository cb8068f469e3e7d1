"""The backbone latency tool: fused FastViT and FMViT networks timed on every backend available, with the paper's
protocol.

For each network (a variant built directly, or a config) it fuses the model and checks the fusion, exports the
export form to ONNX (and a TensorRT engine when TensorRT is installed), and times, round-robin within each backend so
that drift in the machine's speed affects every candidate alike (with ``interleave_networks``, round-robin across all
the networks of the run, so that ratios between networks are taken under the same conditions too):

* ``pytorch-cpu``: the fused model in PyTorch eager mode;
* ``onnxruntime-cpu``: the exported graph in ONNX Runtime's CPU provider;
* with an NVIDIA GPU: ``pytorch-cuda`` (eager), ``pytorch-cuda-graph`` (the same, captured in a CUDA graph),
  ``onnxruntime-cuda`` (when the CUDA provider is installed) and ``tensorrt`` (when TensorRT is).

With ``compare_timm`` the classifier variants are also timed as timm's reparameterized model with the same weights,
exported with the same exporter and opset and run with the same session options; ratios ours / timm are taken within
the run. The protocol (the paper's Section 4, "Benchmarking"): 100 warm-up and 100 timed runs, medians; batch 8 at
256x256 for classifiers and batch 2 at 512x512 for dense backbones (``protocol='batch1'``: batch 1, as FMViT
reports). FMViT classifiers default to 224x224, the resolution FMViT is trained and timed at in its paper (Table 2).

Results: median, p90, throughput, peak memory, attained GFLOP/s against the machine's matrix-multiply peak measured
in the same run, the settings and the machine (with its load average), as JSON and a markdown table, and the
accuracy-vs-latency figure of the paper's Figure 1 (our latency, the published top-1). Imports torch and mmengine
only; the engines, timm and matplotlib are imported when used.
"""
import copy
import ctypes
import datetime
import gc
import json
import os
import os.path as osp
import shlex
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .. import __version__
from ..analysis import flop_analyzer
from .export import DEFAULT_OPSET, FP32_TOLERANCE, _compare, _export_onnx, fuse_and_verify
from .export_form import REWRITES
from .latency import (load_average, machine_info, matmul_peak, proc_status_kib, ratio_interval, summarize,
                      time_interleaved, write_text_atomic)
from .loading import (BACKBONE, CLASSIFIER, FAMILIES, INPUT_NAME, PROTOCOL, Deployable, canonical_variant,
                      from_variant, load_from_config, parse_variant)
from .runtimes import BackendUnavailable, TensorRTRunner, build_tensorrt_engine, ort_providers, ort_runner, \
    ort_session, probe

CPU_BACKENDS = ('pytorch-cpu', 'onnxruntime-cpu')
CUDA_BACKENDS = ('pytorch-cuda', 'pytorch-cuda-graph', 'onnxruntime-cuda', 'tensorrt')
BACKENDS = CPU_BACKENDS + CUDA_BACKENDS
PROTOCOLS = {
    'paper': dict(description='FastViT paper: warm-up 100, median of 100; batch 8 at 256x256 (classification; FMViT '
                              'classifiers at 224x224, their resolution), batch 2 at 512x512 (dense backbones)',
                  batch=None),
    'batch1': dict(description='batch 1 (as FMViT\'s Table 2: FMViT classifiers at 224x224, FastViT at 256x256), '
                               'warm-up 100, median of 100', batch=1),
}
# ImageNet-1k top-1 for the accuracy-vs-latency figure: Apple's README at 256x256 (github.com/apple/ml-fastvit) and
# FMViT's Table 2 at 224x224 (docs/fmvit.md).
PUBLISHED_TOP1 = {'t8': 76.2, 't12': 79.3, 's12': 79.9, 'sa12': 80.9, 'sa24': 82.7, 'sa36': 83.6, 'ma36': 83.9,
                  'fmvit_t': 72.9, 'fmvit_s': 78.5, 'fmvit_m': 80.3, 'fmvit_b': 82.4, 'fmvit_l': 83.3}
FAMILY_NAMES = {'fastvit': 'FastViT', 'fmvit': 'FMViT'}
MEMORY_RUNS = 3
MIB = 2**20


# ---------------------------------------------------------------------------------------------------------------------
# networks

def timm_fused_pair(variant: str, seed: int = 0) -> Tuple[Deployable, nn.Module]:
    """Our classifier and timm's reparameterized ``fastvit_<variant>``, both with the same (timm's, randomized) weights.

    Raises:
        BackendUnavailable: timm is not installed.
    """
    ok, detail = probe('timm')
    if not ok:
        raise BackendUnavailable(f'comparing with timm needs the `timm` package ({detail}); '
                                 f'pip install timm==1.0.31 (requirements/tests.txt)')
    import timm
    from timm.utils import reparameterize_model as timm_reparameterize

    from ..convert import timm_to_mmfastvit
    from ..models.classifier import FastViTClassifier
    from ..models.utils.fusion_checks import randomize_fusable_state_
    from .loading import as_deployable

    torch.manual_seed(seed)
    timm_model = randomize_fusable_state_(timm.create_model(f'fastvit_{variant}'), seed).eval()
    ours = FastViTClassifier(variant)
    ours.load_state_dict(timm_to_mmfastvit(timm_model.state_dict()))
    source = dict(variant=variant, seed=seed, weights=f'timm fastvit_{variant}, randomized')
    deployable = as_deployable(ours.eval(), f'fastvit_{variant}', source)
    return deployable, timm_reparameterize(timm_model).eval()


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward (fvcore's convention, the paper's "FLOPs")."""
    with torch.no_grad():
        return int(flop_analyzer(model, (x,)).total())


# ---------------------------------------------------------------------------------------------------------------------
# memory

def _libc():
    try:
        return ctypes.CDLL('libc.so.6')
    except OSError:
        return None


def _return_freed_memory() -> None:
    """Hands freed heap memory back to the OS (glibc) so that resident-set readings show live memory."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


class CpuPeak:
    """Peak resident growth while building and running a candidate: ``VmHWM`` after, minus ``VmRSS`` before.

    On Linux the high-water mark is reset at the start (``/proc/self/clear_refs``) and, inside the block only, glibc
    serves blocks of 64 KiB and more from ``mmap`` (returned to the OS when freed), so the reading is this candidate's
    weights, activations and engine buffers, not what earlier candidates left. On leaving, large blocks go back to
    the heap (thresholds at glibc's adaptive maximum, 32 MiB), so the timed runs do not pay an ``mmap`` per tensor.
    Elsewhere the reading is None.
    """

    def __init__(self) -> None:
        self.supported = osp.exists('/proc/self/status')
        self.libc = _libc()

    def __enter__(self) -> 'CpuPeak':
        self.mib, self.reset = None, False
        if self.supported:
            if self.libc is not None:
                self.libc.mallopt(_M_MMAP_THRESHOLD, 65536)
            _return_freed_memory()
            self.baseline = proc_status_kib('VmRSS')
            try:
                with open('/proc/self/clear_refs', 'w') as f:
                    f.write('5')
                self.reset = True
            except OSError:
                pass
        return self

    def __exit__(self, *exc) -> None:
        if self.supported and self.reset:
            self.mib = (proc_status_kib('VmHWM') - self.baseline) / 1024
        if self.libc is not None:
            self.libc.mallopt(_M_MMAP_THRESHOLD, 32 * MIB)
            self.libc.mallopt(_M_TRIM_THRESHOLD, 64 * MIB)


# ---------------------------------------------------------------------------------------------------------------------
# candidates

class Candidate:
    """One timed thing: a zero-argument ``call``, on ``device`` (``'cpu'`` / ``'cuda'``)."""

    def __init__(self, model: str, backend: str, call: Callable[[], object], device: str,
                 memory_mib: Optional[float] = None, note: str = '') -> None:
        self.model, self.backend, self.call, self.device = model, backend, call, device
        self.memory_mib, self.note = memory_mib, note

    @property
    def key(self) -> str:
        return f'{self.model}/{self.backend}'


def _pytorch_cpu(model: nn.Module, x: torch.Tensor, who: str) -> Candidate:
    with CpuPeak() as peak:
        runner = copy.deepcopy(model).eval()
        with torch.inference_mode():
            for _ in range(MEMORY_RUNS):
                runner(x)
    return Candidate(who, 'pytorch-cpu', lambda: runner(x), 'cpu', peak.mib)


def _onnxruntime_cpu(path: str, x: torch.Tensor, who: str, threads: Optional[int], optimization: str,
                     spinning: bool, expected: Sequence[torch.Tensor]) -> Tuple[Candidate, dict]:
    with CpuPeak() as peak:
        session = ort_session(path, 'cpu', threads=threads, optimization=optimization, spinning=spinning)
        call = ort_runner(session, {INPUT_NAME: x})
        for _ in range(MEMORY_RUNS):
            out = call()
    check = _compare(f'{who}: ONNX Runtime vs PyTorch', [torch.from_numpy(o) for o in out], expected, FP32_TOLERANCE)
    return Candidate(who, 'onnxruntime-cpu', call, 'cpu', peak.mib), check


def _cuda_candidates(who: str, model: nn.Module, onnx_path: Optional[str], x: torch.Tensor, backends: Sequence[str],
                     fp16: bool, work_dir: str, log: Callable[[str], None]) -> List[Candidate]:
    """PyTorch eager / CUDA graph, ONNX Runtime CUDA and TensorRT candidates (skipping unavailable ones, logged)."""
    dtype = torch.float16 if fp16 else torch.float32
    xg = x.to('cuda', dtype)
    out: List[Candidate] = []
    gpu_model = copy.deepcopy(model).to('cuda', dtype).eval()
    if 'pytorch-cuda' in backends or 'pytorch-cuda-graph' in backends:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.inference_mode():
            for _ in range(MEMORY_RUNS):
                gpu_model(xg)
        torch.cuda.synchronize()
        mem = (torch.cuda.max_memory_allocated() - base) / MIB
        if 'pytorch-cuda' in backends:
            out.append(Candidate(who, 'pytorch-cuda', lambda: gpu_model(xg), 'cuda', mem, 'activations only'))
        if 'pytorch-cuda-graph' in backends:
            static_x = xg.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.inference_mode(), torch.cuda.stream(stream):
                for _ in range(3):
                    gpu_model(static_x)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                gpu_model(static_x)
            out.append(Candidate(who, 'pytorch-cuda-graph', graph.replay, 'cuda', mem, 'activations only'))
    if 'onnxruntime-cuda' in backends and onnx_path:
        try:
            ort_providers('cuda')
            free_before = torch.cuda.mem_get_info()[0]
            session = ort_session(onnx_path, 'cuda')
            call = ort_runner(session, {INPUT_NAME: xg})
            for _ in range(MEMORY_RUNS):
                call()
            torch.cuda.synchronize()
            out.append(Candidate(who, 'onnxruntime-cuda', call, 'cuda',
                                 (free_before - torch.cuda.mem_get_info()[0]) / MIB, 'device memory taken'))
        except BackendUnavailable as err:
            log(f'{who}: onnxruntime-cuda skipped: {err}')
    if 'tensorrt' in backends and onnx_path:
        try:
            shape = tuple(xg.shape)
            plan = build_tensorrt_engine(onnx_path, INPUT_NAME, dict(min=shape, opt=shape, max=shape), log=log)
            with open(osp.join(work_dir, osp.basename(onnx_path).replace('.onnx', '.engine')), 'wb') as f:
                f.write(plan)
            free_before = torch.cuda.mem_get_info()[0]
            runner = TensorRTRunner(plan)
            for _ in range(MEMORY_RUNS):
                runner(xg)
            torch.cuda.synchronize()
            out.append(Candidate(who, 'tensorrt', lambda: runner(xg), 'cuda',
                                 (free_before - torch.cuda.mem_get_info()[0]) / MIB, 'device memory taken'))
        except BackendUnavailable as err:
            log(f'{who}: tensorrt skipped: {err}')
    return out


def available_backends(requested: Optional[Sequence[str]] = None) -> Tuple[List[str], Dict[str, str]]:
    """The backends that can run here among ``requested`` (all by default), and why the others cannot."""
    requested = list(requested or BACKENDS)
    unknown = [b for b in requested if b not in BACKENDS]
    if unknown:
        raise ValueError(f'unknown backends {unknown}; choose from {list(BACKENDS)}')
    why: Dict[str, str] = {}
    ok_ort, ort_detail = probe('onnxruntime')
    ok_onnx, onnx_detail = probe('onnx')
    cuda = torch.cuda.is_available()
    for backend in requested:
        if backend == 'onnxruntime-cpu' and not (ok_ort and ok_onnx):
            why[backend] = f'onnx / onnxruntime missing ({onnx_detail if not ok_onnx else ort_detail})'
        elif backend in CUDA_BACKENDS and not cuda:
            why[backend] = 'no CUDA GPU (torch.cuda.is_available() is False)'
        elif backend == 'onnxruntime-cuda' and ok_ort:
            import onnxruntime
            if 'CUDAExecutionProvider' not in onnxruntime.get_available_providers():
                why[backend] = 'the installed onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu)'
        elif backend == 'onnxruntime-cuda' and not ok_ort:
            why[backend] = f'onnxruntime missing ({ort_detail})'
        elif backend == 'tensorrt':
            ok_trt, trt_detail = probe('tensorrt')
            if not ok_trt:
                why[backend] = f'tensorrt cannot be imported ({trt_detail})'
    return [b for b in requested if b not in why], why


# ---------------------------------------------------------------------------------------------------------------------
# one network: prepared (fused, checked, exported, runners built), then timed, then summarized

class PreparedNetwork:
    """A network ready to time: its checks, its ONNX files and its :class:`Candidate` runners; the timing
    (:func:`time_networks`) adds ``latency`` and the load average around it."""

    def __init__(self, deployable: Deployable, batch: int, shape: Tuple[int, int], macs: int, checks: dict,
                 onnx_files: dict, candidates: List[Candidate], has_timm: bool) -> None:
        self.deployable, self.batch, self.shape, self.macs = deployable, batch, shape, macs
        self.checks, self.onnx_files, self.candidates, self.has_timm = checks, onnx_files, candidates, has_timm
        self.latency: Dict[str, dict] = {}
        self.load_before: Optional[dict] = None
        self.load_after: Optional[dict] = None

    @property
    def name(self) -> str:
        return self.deployable.name


def prepare_network(deployable: Deployable,
                    backends: Sequence[str],
                    batch: int,
                    shape: Tuple[int, int],
                    work_dir: str,
                    timm_model: Optional[nn.Module] = None,
                    threads: Optional[int] = None,
                    ort_optimization: str = 'all',
                    exporter: str = 'torchscript',
                    opset: int = DEFAULT_OPSET,
                    rewrites: Sequence[str] = REWRITES,
                    cuda_fp16: bool = True,
                    ort_spinning: bool = False,
                    seed: int = 0,
                    log: Callable[[str], None] = print) -> PreparedNetwork:
    """Fuses and checks ``deployable``, counts its multiply-adds, exports it and builds one runner per backend (and
    per model, with ``timm_model``); nothing is timed yet."""
    x = torch.rand(batch, 3, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    fused, form, expected, checks = fuse_and_verify(deployable, x, rewrites,
                                                    log=lambda m: log(f'{deployable.name}: {m}'))
    macs = count_macs(fused, x)
    need_onnx = any(b in backends for b in ('onnxruntime-cpu', 'onnxruntime-cuda', 'tensorrt'))
    models = {'ours': (fused, form)}
    if timm_model is not None:
        models['timm'] = (timm_model, timm_model)  # timm's fused graph, exported as it is
        checks['timm'] = _compare('timm fused vs ours fused', _as_tuple(timm_model, x), expected, FP32_TOLERANCE)
    onnx_files, candidates = {}, []
    for who, (eager, graph) in models.items():
        if need_onnx:
            path = osp.join(work_dir, f'{deployable.name}_{who}_{shape[0]}x{shape[1]}_b{batch}.onnx')
            info = _export_onnx(graph, x, path, deployable.output_names, opset, exporter, False, False,
                                log=lambda m: None)
            onnx_files[who] = dict(path=path, nodes=info['nodes'])
        if 'pytorch-cpu' in backends:
            candidates.append(_pytorch_cpu(eager, x, who))
        if 'onnxruntime-cpu' in backends:
            cand, check = _onnxruntime_cpu(onnx_files[who]['path'], x, who, threads, ort_optimization, ort_spinning,
                                           expected)
            checks[f'{who}/onnxruntime-cpu'] = check
            candidates.append(cand)
        if any(b in CUDA_BACKENDS for b in backends):
            gpu_onnx = None
            if need_onnx:
                gpu_onnx = onnx_files[who]['path']
                if cuda_fp16:
                    gpu_onnx = gpu_onnx.replace('.onnx', '_fp16.onnx')
                    _export_onnx(copy.deepcopy(graph).half(), x.half(), gpu_onnx, deployable.output_names, opset,
                                 exporter, False, False, log=lambda m: None)
            candidates.extend(_cuda_candidates(who, eager, gpu_onnx, x, backends, cuda_fp16, work_dir, log))
    return PreparedNetwork(deployable, batch, tuple(shape), macs, checks, onnx_files, candidates,
                           timm_model is not None)


def time_networks(networks: Sequence[PreparedNetwork],
                  warmup: int,
                  runs: int,
                  log: Callable[[str], None] = print,
                  progress_factory: Optional[Callable[[int], Callable[[int, int], None]]] = None) -> None:
    """Times every candidate of ``networks``, round-robin across all of them within one backend, backends one after
    the other (one runtime's idle threads, OpenMP's or ONNX Runtime's, spin on the cores the next one needs); fills
    each network's ``latency``, ``load_before`` and ``load_after``."""
    load_before = load_average()
    for backend in BACKENDS:
        group = [(net, c) for net in networks for c in net.candidates if c.backend == backend]
        if not group:
            continue
        names = sorted({net.name for net, _ in group}, key=[n.name for n in networks].index)
        models = sorted({c.model for _, c in group}, key=lambda m: (m != 'ours', m))
        log(f'{", ".join(names)}: timing {"/".join(models)} on {backend}: {warmup} warm-up + {runs} runs each, '
            f'round-robin over {len(group)} candidates')
        times = time_interleaved({f'{net.name}:{c.key}': c.call for net, c in group}, warmup, runs,
                                 sync=torch.cuda.synchronize if backend in CUDA_BACKENDS else None,
                                 progress=progress_factory(warmup + runs) if progress_factory else None)
        for net, c in group:
            summary = summarize(times[f'{net.name}:{c.key}'], net.batch)
            summary.update(peak_memory_mib=c.memory_mib, memory_note=c.note,
                           gflops=2 * net.macs / (summary['median_ms'] / 1e3) / 1e9)
            net.latency[c.key] = summary
    load_after = load_average()
    for net in networks:
        net.load_before, net.load_after = load_before, load_after


def network_result(net: PreparedNetwork) -> dict:
    """The results dict of a timed network (the JSON's ``results[name]``)."""
    ratios, intervals = {}, {}
    if net.has_timm:
        for backend in BACKENDS:
            a, b = net.latency.get(f'ours/{backend}'), net.latency.get(f'timm/{backend}')
            if a and b:
                intervals[backend] = ratio_interval(a['runs_ms'], b['runs_ms'])
                ratios[backend] = intervals[backend]['ratio']  # median / median
    deployable = net.deployable
    return dict(name=deployable.name, kind=deployable.kind, family=deployable.family, source=deployable.source,
                batch=net.batch, shape=list(net.shape), macs=net.macs, gflop_per_run=2 * net.macs / 1e9,
                checks=net.checks, onnx=net.onnx_files, latency=net.latency, ratios_ours_over_timm=ratios,
                ratio_intervals_ours_over_timm=intervals,
                load_before=net.load_before, load_after=net.load_after)


def _as_tuple(model: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    with torch.no_grad():
        out = model(x)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


# ---------------------------------------------------------------------------------------------------------------------
# reports

def _row(cells: Sequence[str]) -> str:
    return '| ' + ' | '.join(cells) + ' |'


def _load_text(load: Optional[dict]) -> str:
    return 'n/a' if not load else f"{load['1min']} / {load['5min']} / {load['15min']}"


def ratio_text(result: dict, backend: str) -> str:
    """``ours / timm`` on ``backend`` with its paired-bootstrap 95% interval, e.g. ``0.931 [0.912, 0.950]``."""
    ratio = result['ratios_ours_over_timm'].get(backend)
    if ratio is None:
        return '-'
    interval = result.get('ratio_intervals_ours_over_timm', {}).get(backend)
    return f'{ratio:.3f}' + (f' [{interval["low"]:.3f}, {interval["high"]:.3f}]' if interval else '')


def markdown_table(report: dict) -> str:
    """The latency table: one row per network and model, one column group per backend, ratios and efficiency."""
    results, settings = report['results'], report['settings']
    peak = report.get('peak', {}).get('cpu', {}).get('best_gflops')
    keys = []
    for res in results.values():
        for key in res['latency']:
            if key.split('/', 1)[1] not in keys:
                keys.append(key.split('/', 1)[1])
    backends = [b for b in BACKENDS if b in keys]
    header = ['network', 'batch', 'input', 'model'] + [f'{b} median ms (p90)' for b in backends]
    header += [f'{b} img/s' for b in backends] + [f'{b} GFLOP/s' + (' (% peak)' if b.endswith('cpu') and peak else '')
                                                  for b in backends]
    header += [f'{b} peak MiB' for b in backends]
    has_timm = any(res['ratios_ours_over_timm'] for res in results.values())
    if has_timm:
        header += [f'ours / timm {b}' for b in backends]
    header.append('load 1 min (before / after)')
    lines = [_row(header), _row(['---'] * len(header))]
    for res in results.values():
        models = sorted({k.split('/', 1)[0] for k in res['latency']}, key=lambda m: (m != 'ours', m))
        for model in models:
            cells = [res['name'], str(res['batch']), f'{res["shape"][0]}x{res["shape"][1]}', model]
            lat = [res['latency'].get(f'{model}/{b}') for b in backends]
            cells += [f'{s["median_ms"]:.2f} ({s["p90_ms"]:.2f})' if s else '-' for s in lat]
            cells += [f'{s["throughput_ips"]:.1f}' if s else '-' for s in lat]
            for b, s in zip(backends, lat):
                if not s:
                    cells.append('-')
                elif b.endswith('cpu') and peak:
                    cells.append(f'{s["gflops"]:.0f} ({100 * s["gflops"] / peak:.0f}%)')
                else:
                    cells.append(f'{s["gflops"]:.0f}')
            cells += [f'{s["peak_memory_mib"]:.1f}' if s and s['peak_memory_mib'] is not None else '-' for s in lat]
            if has_timm:
                cells += [ratio_text(res, b) if model == 'ours' else '' for b in backends]
            before, after = res.get('load_before'), res.get('load_after')
            cells.append(f'{before["1min"]} / {after["1min"]}' if before and after else '-')
            lines.append(_row(cells))
    machine = report['machine']
    notes = ['', f"Protocol: {settings['protocol_description']}. This run: batch and input as in the table, "
             f"{settings['warmup']} warm-up + {settings['runs']} timed runs per candidate, "
             f"{settings.get('timing', 'round-robin between the models of one backend; backends one after the other')}"
             f"; medians (p90 in brackets); ours / timm is the ratio of the medians, with the 95% interval of a "
             f"bootstrap that resamples the rounds in pairs in square brackets.",
             f"Machine: {machine['cpu']} ({machine['cpu_count']} cores), {settings['threads']} CPU thread(s)"
             + (f", {machine['gpu']}" if machine.get('gpu') else ', no GPU') + f"; torch {machine['torch']}"
             + ''.join(f", {k} {v}" for k, v in settings['versions'].items() if v) + '.',
             f"Load average (1 / 5 / 15 min) at the start of the run: {_load_text(settings['load_before'])}; at the "
             f"end: {_load_text(settings['load_after'])}; while each network was timed: the last column."]
    if peak:
        cpu_peak = report['peak']['cpu']
        notes.append(f"fp32 matrix-multiply peak of this machine, measured in the same run: {peak:.0f} GFLOP/s "
                     f"(best of {cpu_peak['runs']} torch.matmul {cpu_peak['size']}^3, {cpu_peak['threads']} "
                     f"thread(s); median {cpu_peak['median_gflops']:.0f}). GFLOP/s = 2 x multiply-adds (fvcore count "
                     f"of the fused model) / median time.")
    notes.append('Peak MiB (CPU): resident growth while building the runner and running it 3 times (weights, '
                 'activations, engine buffers); CUDA: see the JSON notes.')
    if settings.get('unavailable'):
        notes.append('Not measured here: ' + '; '.join(f'{b} ({why})' for b, why in settings['unavailable'].items())
                     + '.')
    notes.append(f"Reproduce: `{settings['command']}`")
    return '\n'.join(lines + notes) + '\n'


def accuracy_latency_plot(report: dict, path: str, backend: str = 'onnxruntime-cpu') -> Optional[str]:
    """The paper's Figure 1 for the measured variants: published ImageNet top-1 against our median latency on
    ``backend`` (and timm's, when compared). Returns the path, or None when no classifier variant was measured.

    Raises:
        BackendUnavailable: matplotlib is not installed.
    """
    ok, detail = probe('matplotlib')
    if not ok:
        raise BackendUnavailable(f'the accuracy-vs-latency plot needs matplotlib ({detail}); pip install matplotlib')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    series: Dict[str, List[Tuple[float, float, str]]] = {}
    shapes: Dict[str, str] = {}
    for res in report['results'].values():
        variant = res['source'].get('variant')
        if res['kind'] != CLASSIFIER or variant not in PUBLISHED_TOP1:
            continue
        family = FAMILY_NAMES[res.get('family', 'fastvit')]
        shapes[family] = f'{res["shape"][0]}x{res["shape"][1]}'
        for key, summary in res['latency'].items():
            model, b = key.split('/', 1)
            if b in (backend, 'tensorrt', 'pytorch-cpu', 'pytorch-cuda-graph'):
                series.setdefault(f'{family} ({"mmfastvit" if model == "ours" else "timm"}), {b}', []).append(
                    (summary['median_ms'] / res['batch'], PUBLISHED_TOP1[variant], variant.upper().split('_')[-1]))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 5))
    for label, points in sorted(series.items()):
        points.sort(key=lambda p: (p[1], p[0]))  # variants in accuracy order, as the paper draws them
        ax.plot([p[0] for p in points], [p[1] for p in points], marker='o', label=label)
        if 'mmfastvit' in label:  # timm's points sit beside ours: one set of names is enough
            for lat, top1, name in points:
                ax.annotate(name, (lat, top1), textcoords='offset points', xytext=(-6, 6), fontsize=7, ha='right')
    settings = report['settings']
    ax.set_xlabel(f'latency per image (ms), median, batch {settings["batch_classifier"]}, '
                  f'{settings["threads"]} CPU thread(s)')
    ax.set_ylabel('ImageNet-1k top-1 (%), published')
    sources = dict(FastViT='Apple', FMViT='its Table 2')
    ax.set_title(f'{" and ".join(shapes)} accuracy vs latency (cf. the FastViT paper\'s Figure 1)\n'
                 + ', '.join(f'{k} at {v} (top-1: {sources[k]})' for k, v in shapes.items()), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.png', dir=directory)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if osp.exists(tmp):
            os.remove(tmp)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# the whole run

def protocol_plan(protocol: str, kind: str, batch: Optional[int] = None, shape: Optional[Sequence[int]] = None,
                  family: str = 'fastvit') -> Tuple[int, Tuple[int, int]]:
    """``(batch, (H, W))`` of a ``family`` network of ``kind`` under ``protocol``, unless overridden (FMViT
    classifiers at 224x224, the rest as in :data:`~mmfastvit.deploy.loading.PROTOCOL`)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f'protocol "{protocol}" is not one of {list(PROTOCOLS)}')
    if kind not in PROTOCOL:
        raise ValueError(f'kind "{kind}" is not one of {list(PROTOCOL)}')
    if family not in FAMILIES:
        raise ValueError(f'family "{family}" is not one of {list(FAMILIES)}')
    b = batch or PROTOCOLS[protocol]['batch'] or PROTOCOL[kind]['batch']
    if shape:
        return b, tuple(shape)
    side = FAMILIES[family][2]
    return b, (side, side) if kind == CLASSIFIER else tuple(PROTOCOL[kind]['shape'])


def run(variants: Sequence[str] = (),
        configs: Sequence[str] = (),
        checkpoints: Sequence[Optional[str]] = (),
        dense: bool = False,
        backends: Optional[Sequence[str]] = None,
        protocol: str = 'paper',
        batch: Optional[int] = None,
        shape: Optional[Tuple[int, int]] = None,
        warmup: int = 100,
        runs: int = 100,
        threads: Optional[int] = None,
        compare_timm: bool = False,
        ort_optimization: str = 'all',
        ort_spinning: bool = False,
        exporter: str = 'torchscript',
        opset: int = DEFAULT_OPSET,
        rewrites: Sequence[str] = REWRITES,
        cuda_fp16: bool = True,
        measure_peak: bool = True,
        work_dir: Optional[str] = None,
        seed: int = 0,
        log: Callable[[str], None] = print,
        progress_factory: Optional[Callable[[int], Callable[[int, int], None]]] = None,
        before_each: Optional[Callable[[str], Optional[dict]]] = None,
        command: Optional[str] = None,
        interleave_networks: bool = False) -> dict:
    """Benchmarks every network; returns the report (settings, machine, peak, results). See the module docstring.

    ``variants`` are names of :func:`~mmfastvit.deploy.loading.variant_names` (FastViT ``'t8'`` ..., FMViT
    ``'fmvit_t'`` ...). ``before_each(label)`` runs before each network is timed (e.g.
    :func:`~mmfastvit.deploy.latency.wait_for_load` on a shared machine); what it returns is stored with that
    network's results as ``before``. With ``interleave_networks`` every network is prepared first and all are timed
    together, round-robin within each backend; ``before_each('all networks')`` then runs once, before the timing.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f'protocol "{protocol}" is not one of {list(PROTOCOLS)}')
    if not variants and not configs:
        raise ValueError('give variants or configs to benchmark')
    if warmup < 0 or runs < 1:
        raise ValueError(f'warmup {warmup} must be >= 0 and runs {runs} >= 1')
    usable, unavailable = available_backends(backends)
    if backends is not None and unavailable:
        for b, why in unavailable.items():
            log(f'{b} is not available here: {why}')
    if not usable:
        raise BackendUnavailable('none of the requested backends can run here: '
                                 + '; '.join(f'{b}: {w}' for b, w in unavailable.items()))
    if threads is not None:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    if compare_timm and (configs or dense):
        raise ValueError('--compare-timm compares classifier variants only (timm builds no dense backbone here)')
    variants = [canonical_variant(v) for v in variants]
    if compare_timm and any(parse_variant(v)[0] != 'fastvit' for v in variants):
        raise ValueError(f'--compare-timm compares FastViT variants only (timm has no FMViT); got {variants}')

    def plan(kind: str, family: str = 'fastvit') -> Tuple[int, Tuple[int, int]]:
        return protocol_plan(protocol, kind, batch, shape, family)

    load_before = load_average()
    peak = {}
    if measure_peak:
        peak['cpu'] = matmul_peak(device='cpu')
        log(f'fp32 matmul peak (CPU, {threads} threads): {peak["cpu"]["best_gflops"]:.0f} GFLOP/s')
        if torch.cuda.is_available():
            peak['cuda_fp32'] = matmul_peak(4096, device='cuda', dtype=torch.float32)
            peak['cuda_fp16'] = matmul_peak(4096, device='cuda', dtype=torch.float16)
    own_dir = work_dir is None
    work_dir = work_dir or tempfile.mkdtemp(prefix='mmfastvit-bench-')
    os.makedirs(work_dir, exist_ok=True)
    results = {}
    try:
        jobs: List[Tuple[str, Callable[[], Tuple[Deployable, Optional[nn.Module]]]]] = []
        for variant in variants:
            if compare_timm:
                jobs.append((variant, lambda v=variant: timm_fused_pair(v, seed)))
            else:
                jobs.append((variant, lambda v=variant: (from_variant(v, BACKBONE if dense else CLASSIFIER,
                                                                      seed=seed), None)))
        checkpoints = list(checkpoints) + [None] * (len(configs) - len(checkpoints))
        for config, ckpt in zip(configs, checkpoints):
            jobs.append((config, lambda c=config, k=ckpt: (load_from_config(c, k), None)))
        prepared: List[Tuple[PreparedNetwork, Optional[dict]]] = []

        def finish(net: PreparedNetwork, before: Optional[dict]) -> None:
            res = network_result(net)
            key = net.name + ('' if net.name not in results else f'_{len(results)}')
            if before is not None:
                res['before'] = before
            results[key] = res
            for k, v in res['latency'].items():
                log(f'{net.name} {k}: median {v["median_ms"]:.2f} ms, p90 {v["p90_ms"]:.2f} ms, '
                    f'{v["throughput_ips"]:.1f} img/s, {v["gflops"]:.0f} GFLOP/s')
            for backend, ratio in res['ratios_ours_over_timm'].items():
                log(f'{net.name} ours / timm on {backend}: {ratio:.3f}')

        for label, make in jobs:
            deployable, timm_model = make()
            b, s = plan(deployable.kind, deployable.family)
            net = prepare_network(deployable, usable, b, s, work_dir, timm_model, threads, ort_optimization,
                                  exporter, opset, rewrites, cuda_fp16, ort_spinning, seed, log)
            if interleave_networks:
                prepared.append((net, None))
                continue
            before = before_each(label) if before_each else None
            time_networks([net], warmup, runs, log, progress_factory)
            finish(net, before)
        if interleave_networks and prepared:
            before = before_each('all networks') if before_each else None
            time_networks([net for net, _ in prepared], warmup, runs, log, progress_factory)
            for net, _ in prepared:
                finish(net, before)
    finally:
        if own_dir:
            import shutil
            shutil.rmtree(work_dir, ignore_errors=True)
    versions = {name: probe(name)[1] if probe(name)[0] else None
                for name in ('mmengine', 'onnx', 'onnxruntime', 'timm', 'tensorrt')}
    settings = dict(protocol=protocol, protocol_description=PROTOCOLS[protocol]['description'], warmup=warmup,
                    runs=runs, batch_classifier=plan(CLASSIFIER)[0], batch_backbone=plan(BACKBONE)[0],
                    shape_classifier=list(plan(CLASSIFIER)[1]),
                    shape_classifier_fmvit=list(plan(CLASSIFIER, 'fmvit')[1]), shape_backbone=list(plan(BACKBONE)[1]),
                    threads=threads, dtype_cpu='float32', cuda_precision='float16' if cuda_fp16 else 'float32',
                    backends=list(usable), unavailable=unavailable, compare_timm=compare_timm,
                    onnx=dict(exporter=exporter, opset=opset, rewrites_ours=list(rewrites), rewrites_timm=[]),
                    onnxruntime_session=dict(graph_optimization_level=ort_optimization, intra_op_num_threads=threads,
                                             inter_op_num_threads=1, execution_mode='sequential',
                                             allow_spinning=ort_spinning, same_for_every_model=True),
                    timing=('round-robin across every network and model of one backend (all networks interleaved); '
                            'backends one after the other') if interleave_networks else
                    'round-robin between the models of one backend; backends one after the other',
                    seed=seed, versions=versions, mmfastvit=__version__, load_before=load_before,
                    load_after=load_average(), command=command or shlex.join(sys.orig_argv),
                    date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))
    return dict(settings=settings, machine=machine_info(), peak=peak, results=results)


def write_report(report: dict, out: str, plot: bool = True, log: Callable[[str], None] = print) -> List[str]:
    """Writes ``<out>.json``, ``<out>.md`` and (classifier variants, matplotlib installed) ``<out>.png``."""
    written = []
    json_path, md_path, png_path = out + '.json', out + '.md', out + '.png'
    write_text_atomic(json_path, json.dumps(report, indent=2, default=str) + '\n')
    written.append(json_path)
    families = sorted({res.get('family', 'fastvit') for res in report['results'].values()}, key=list(FAMILIES).index)
    write_text_atomic(md_path, f'# {" and ".join(FAMILY_NAMES[f] for f in families) or "FastViT"} latency\n\n'
                      + markdown_table(report))
    written.append(md_path)
    if plot:
        try:
            if accuracy_latency_plot(report, png_path):
                written.append(png_path)
        except BackendUnavailable as err:
            log(f'no plot: {err}')
    return written

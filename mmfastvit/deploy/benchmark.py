"""The backbone latency benchmark: fused networks of every deployable backbone (FastViT, FMViT) timed on every
backend available, with the paper's protocol.

For each network (a variant built directly, or a config) it fuses the model and checks the fusion, then hands it to
the engine of each backend (:mod:`mmfastvit.deploy.engines`), which builds a timed runner (exporting the export form
to ONNX, building a TensorRT engine, ... as it needs). It times round-robin within each backend so that drift in the
machine's speed affects every candidate alike (with ``interleave_networks``, round-robin across all the networks of
the run, so that ratios between networks are taken under the same conditions too):

* ``pytorch-cpu``: the fused model in PyTorch eager mode;
* ``onnxruntime-cpu``: the exported graph in ONNX Runtime's CPU provider;
* with an NVIDIA GPU: ``pytorch-cuda`` (eager), ``pytorch-cuda-graph`` (the same, captured in a CUDA graph),
  ``onnxruntime-cuda`` (when the CUDA provider is installed) and ``tensorrt`` (when TensorRT is).

With ``compare_timm`` the classifier variants are also timed as timm's reparameterized model with the same weights
(:mod:`mmfastvit.deploy.timm_pair`), exported with the same exporter and opset and run with the same session options;
ratios ours / timm are taken within the run. The protocol (the paper's Section 4, "Benchmarking"): 100 warm-up and
100 timed runs, medians; batch 8 at 256x256 for classifiers and batch 2 at 512x512 for dense backbones
(``protocol='batch1'``: batch 1, as FMViT reports). FMViT classifiers default to 224x224, the resolution FMViT is
trained and timed at in its paper (Table 2).

The options are one :class:`~mmfastvit.deploy.settings.BenchmarkSettings`. Results: median, p90, throughput, peak
memory, attained GFLOP/s against the machine's matrix-multiply peak measured in the same run, the settings and the
machine (with its load average); :mod:`mmfastvit.deploy.report` writes them as JSON, a markdown table and the
accuracy-vs-latency figure of the paper's Figure 1. Imports torch and mmengine only; the engines, timm and matplotlib
are imported when used.
"""
import os
import shlex
import shutil
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..analysis import flop_analyzer
from .engines import (ENGINES, Candidate, RunTarget, all_backends, available_backends, backend_engine, device_of)
from .latency import load_average, machine_info, matmul_peak, ratio_interval, summarize, time_interleaved
from .loading import BACKBONE, CLASSIFIER, Deployable, from_variant, load_from_config
from .runtimes import BackendUnavailable, probe
from .settings import BenchmarkSettings
from .timm_pair import timm_fused_pair
from .verify import FP32_TOLERANCE, compare, fuse_and_verify, outputs

REPORTED_PACKAGES = ('mmengine', 'onnx', 'onnxruntime', 'timm', 'tensorrt')  # their versions go into the report


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward (fvcore's convention, the paper's "FLOPs")."""
    with torch.no_grad():
        return int(flop_analyzer(model, (x,)).total())


# ---------------------------------------------------------------------------------------------------------------------
# one network: prepared (fused, checked, exported, runners built), then timed, then summarized

class PreparedNetwork:
    """A network ready to time: its checks, its ONNX files and its :class:`~mmfastvit.deploy.engines.Candidate`
    runners; the timing (:func:`time_networks`) adds ``latency`` and the load average around it."""

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


def prepare_network(deployable: Deployable, settings: BenchmarkSettings, work_dir: str,
                    timm_model: Optional[nn.Module] = None, log: Callable[[str], None] = print) -> PreparedNetwork:
    """Fuses and checks ``deployable``, counts its multiply-adds and has each backend's engine build its runner (and
    one per model, with ``timm_model``); nothing is timed yet.

    The batch and input come from ``settings.plan``; the backends are ``settings.backends`` (every one that can run
    here when None). When a backend reads the ONNX graph, each model is exported to ONNX first (``onnx`` in the
    result: path and node count).
    """
    batch, shape = settings.plan(deployable.kind, deployable.family)
    backends = settings.backends if settings.backends is not None else available_backends()[0]
    x = torch.rand(batch, 3, *shape, generator=torch.Generator().manual_seed(settings.seed)) * 2 - 1
    fused, form, expected, checks = fuse_and_verify(deployable, x, settings.rewrites,
                                                    log=lambda m: log(f'{deployable.name}: {m}'))
    macs = count_macs(fused, x)
    models = {'ours': (fused, form)}
    if timm_model is not None:
        models['timm'] = (timm_model, timm_model)  # timm's fused graph, exported as it is
        checks['timm'] = compare('timm fused vs ours fused', outputs(timm_model, x), expected, FP32_TOLERANCE)
    need_onnx = any(backend_engine(b).reads_onnx for b in backends)
    onnx_files, candidates = {}, []
    for who, (eager, graph) in models.items():
        target = RunTarget(who, eager, graph, x, expected, deployable.output_names,
                           f'{deployable.name}_{who}_{shape[0]}x{shape[1]}_b{batch}', work_dir, settings, log)
        if need_onnx:
            onnx_files[who] = target.onnx()
        for backend in (b for b in all_backends() if b in backends):
            try:
                candidate, check = backend_engine(backend).runner(backend, target)
            except BackendUnavailable as err:
                log(f'{who}: {backend} skipped: {err}')
                continue
            if check is not None:
                checks[f'{who}/{backend}'] = check
            candidates.append(candidate)
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
    for backend in all_backends():
        group = [(net, c) for net in networks for c in net.candidates if c.backend == backend]
        if not group:
            continue
        names = sorted({net.name for net, _ in group}, key=[n.name for n in networks].index)
        models = sorted({c.model for _, c in group}, key=lambda m: (m != 'ours', m))
        log(f'{", ".join(names)}: timing {"/".join(models)} on {backend}: {warmup} warm-up + {runs} runs each, '
            f'round-robin over {len(group)} candidates')
        times = time_interleaved({f'{net.name}:{c.key}': c.call for net, c in group}, warmup, runs,
                                 sync=torch.cuda.synchronize if device_of(backend) == 'cuda' else None,
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
        for backend in all_backends():
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


# ---------------------------------------------------------------------------------------------------------------------
# the whole run

def _jobs(settings: BenchmarkSettings) -> List[Tuple[str, Callable[[], Tuple[Deployable, Optional[nn.Module]]]]]:
    """``(label, make)`` per network; ``make()`` gives the deployable and, compared with timm, timm's model."""
    jobs = []
    for variant in settings.variants:
        if settings.compare_timm:
            jobs.append((variant, lambda v=variant: timm_fused_pair(v, settings.seed)))
        else:
            kind = BACKBONE if settings.dense else CLASSIFIER
            jobs.append((variant, lambda v=variant: (from_variant(v, kind, seed=settings.seed), None)))
    checkpoints = list(settings.checkpoints) + [None] * (len(settings.configs) - len(settings.checkpoints))
    for config, ckpt in zip(settings.configs, checkpoints):
        jobs.append((config, lambda c=config, k=ckpt: (load_from_config(c, k), None)))
    return jobs


def run(settings: Optional[BenchmarkSettings] = None,
        log: Callable[[str], None] = print,
        progress_factory: Optional[Callable[[int], Callable[[int, int], None]]] = None,
        before_each: Optional[Callable[[str], Optional[dict]]] = None,
        **options) -> dict:
    """Benchmarks every network; returns the report (settings, machine, peak, results). See the module docstring.

    Args:
        settings (BenchmarkSettings, optional): The run's options; or give them as keyword ``options`` (the
            fields of :class:`~mmfastvit.deploy.settings.BenchmarkSettings`: ``variants=['t8'], runs=3, ...``).
        log (callable): Progress lines.
        progress_factory (callable, optional): ``progress_factory(total)`` -> ``progress(done, total)`` per backend.
        before_each (callable, optional): ``before_each(label)`` runs before each network is timed (e.g.
            :func:`~mmfastvit.deploy.latency.wait_for_load` on a shared machine); what it returns is stored with that
            network's results as ``before``. With ``interleave_networks`` every network is prepared first and all
            are timed together; ``before_each('all networks')`` then runs once, before the timing.

    Raises:
        ValueError: a bad option (from the settings).
        BackendUnavailable: none of the requested backends can run here.
    """
    if settings is None:
        settings = BenchmarkSettings(**options)
    elif options:
        raise TypeError(f'give settings or options, not both (got {sorted(options)})')
    usable, unavailable = available_backends(settings.backends)
    if settings.backends is not None and unavailable:
        for b, why in unavailable.items():
            log(f'{b} is not available here: {why}')
    if not usable:
        raise BackendUnavailable('none of the requested backends can run here: '
                                 + '; '.join(f'{b}: {w}' for b, w in unavailable.items()))
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    settings = settings.replace(backends=tuple(usable), threads=torch.get_num_threads(),
                                command=settings.command or shlex.join(sys.orig_argv))

    load_before = load_average()
    peak = {}
    if settings.measure_peak:
        peak['cpu'] = matmul_peak(device='cpu')
        log(f'fp32 matmul peak (CPU, {settings.threads} threads): {peak["cpu"]["best_gflops"]:.0f} GFLOP/s')
        if torch.cuda.is_available():
            peak['cuda_fp32'] = matmul_peak(4096, device='cuda', dtype=torch.float32)
            peak['cuda_fp16'] = matmul_peak(4096, device='cuda', dtype=torch.float16)
    own_dir = settings.work_dir is None
    work_dir = settings.work_dir or tempfile.mkdtemp(prefix='mmfastvit-bench-')
    os.makedirs(work_dir, exist_ok=True)
    results = {}
    try:
        prepared: List[PreparedNetwork] = []

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

        for label, make in _jobs(settings):
            deployable, timm_model = make()
            net = prepare_network(deployable, settings, work_dir, timm_model, log)
            if settings.interleave_networks:
                prepared.append(net)
                continue
            before = before_each(label) if before_each else None
            time_networks([net], settings.warmup, settings.runs, log, progress_factory)
            finish(net, before)
        if prepared:
            before = before_each('all networks') if before_each else None
            time_networks(prepared, settings.warmup, settings.runs, log, progress_factory)
            for net in prepared:
                finish(net, before)
    finally:
        if own_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    return dict(settings=settings.record(unavailable, _versions(), load_before, load_average()),
                machine=machine_info(), peak=peak, results=results)


def _versions() -> Dict[str, Optional[str]]:
    """Versions of :data:`REPORTED_PACKAGES` and of the packages any timing engine declares (None: not installed)."""
    packages = list(REPORTED_PACKAGES)
    packages += [p for engine in ENGINES.values() if engine.backends for p in engine.packages if p not in packages]
    return {name: probe(name)[1] if probe(name)[0] else None for name in packages}

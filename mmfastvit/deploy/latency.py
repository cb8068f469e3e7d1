"""Latency measurement shared by the benchmarks and the deploy tool (torch and the standard library only).

Protocol: every candidate is warmed up, then timed run by run, round-robin across candidates, so drift in the
machine's speed (frequency scaling, other processes) affects all of them alike; each round starts one candidate later,
so none always runs after the same one (whose caches and threads it would inherit); ratios are taken within one run.
"""
import math
import os
import platform
import random
import re
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

import torch

from ..fileio import atomic_write


def time_interleaved(candidates: Mapping[str, Callable[[], object]],
                     warmup: int,
                     runs: int,
                     sync: Optional[Callable[[], None]] = None,
                     progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, List[float]]:
    """Per-call wall times in ms of each zero-argument callable, warm-up and timed runs interleaved round-robin.

    Args:
        candidates: name -> callable running one forward pass (inputs bound inside it).
        warmup: untimed rounds first.
        runs: timed rounds.
        sync: called after each call before the clock stops (``torch.cuda.synchronize`` for CUDA work).
        progress: called with ``(round, total_rounds)`` after each round.
    """
    times: Dict[str, List[float]] = {name: [] for name in candidates}
    order = list(candidates.items())
    total = warmup + runs
    with torch.inference_mode():
        for rep in range(total):
            shift = rep % len(order)  # each round starts one candidate later: no candidate always follows the same one
            for name, call in order[shift:] + order[:shift]:
                start = time.perf_counter()
                call()
                if sync is not None:
                    sync()
                elapsed_ms = (time.perf_counter() - start) * 1e3
                if rep >= warmup:
                    times[name].append(elapsed_ms)
            if progress is not None:
                progress(rep + 1, total)
    return times


def summarize(times: List[float], batch: int = 1) -> dict:
    """Median, p90 (nearest rank), mean, min, max, spread and throughput (images/s at the median) of timed runs."""
    ordered = sorted(times)
    median = statistics.median(ordered)
    return dict(median_ms=median, p90_ms=ordered[math.ceil(0.9 * len(ordered)) - 1],
                mean_ms=statistics.fmean(ordered), min_ms=ordered[0], max_ms=ordered[-1],
                stdev_ms=statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
                throughput_ips=batch * 1e3 / median if median > 0 else float('inf'), runs_ms=list(times))


def ratio_interval(numerator: List[float], denominator: List[float], resamples: int = 2000, level: float = 0.95,
                   seed: int = 0) -> dict:
    """The ratio of the medians of two candidates timed round-robin, with a paired bootstrap interval.

    Run ``i`` of both was taken in the same round (:func:`time_interleaved`), so the rounds are resampled together:
    a slow stretch of a shared machine then moves both medians and cancels in the ratio, and the interval shows how
    much of the ratio is the models and how much the noise that is left.

    Returns:
        dict: ``ratio`` (median / median), ``low`` and ``high`` (the ``level`` percentile interval over
        ``resamples`` resamples of the rounds), ``level`` and ``rounds``.
    """
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(f'paired timings need the same, non-zero number of runs; got {len(numerator)} and '
                         f'{len(denominator)}')
    rng = random.Random(seed)
    n = len(numerator)
    estimates = []
    for _ in range(resamples):
        picks = [rng.randrange(n) for _ in range(n)]
        estimates.append(statistics.median(numerator[i] for i in picks)
                         / statistics.median(denominator[i] for i in picks))
    estimates.sort()
    tail = (1 - level) / 2
    return dict(ratio=statistics.median(numerator) / statistics.median(denominator),
                low=estimates[int(tail * (resamples - 1))], high=estimates[int(round((1 - tail) * (resamples - 1)))],
                level=level, rounds=n)


def proc_status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status, e.g. ``VmRSS`` or ``VmHWM`` (Linux)."""
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    raise KeyError(f'/proc/self/status has no {field}')


def peak_extra_memory(call: Callable[[], object], runs: int = 3) -> dict:
    """Peak resident memory of ``runs`` calls of ``call`` above the resident memory before them (Linux /proc).

    Call it once first, so that weights and lazily allocated buffers are part of the baseline. Where
    ``/proc/self/clear_refs`` is not writable, the high-water mark cannot be reset and the absolute ``VmHWM`` of the
    process is reported instead (``peak_is_extra`` False).

    Returns:
        dict: ``peak_mib``, ``peak_is_extra``, ``baseline_rss_mib``, ``hwm_mib``.
    """
    baseline_kib = proc_status_kib('VmRSS')
    try:
        Path('/proc/self/clear_refs').write_text('5')  # resets VmHWM to the current VmRSS
        peak_reset = True
    except OSError:
        peak_reset = False
    for _ in range(runs):
        call()
    hwm_kib = proc_status_kib('VmHWM')
    return dict(peak_mib=((hwm_kib - baseline_kib) if peak_reset else hwm_kib) / 1024, peak_is_extra=peak_reset,
                baseline_rss_mib=baseline_kib / 1024, hwm_mib=hwm_kib / 1024)


# the instruction-set features the kernels and engines depend on (fp32 SIMD, int8 dot products, bf16, AMX)
CPU_FEATURES = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'avx512_fp16', 'amx_tile',
                'amx_bf16', 'amx_int8', 'asimd', 'sve', 'bf16', 'i8mm')


def _cpuinfo() -> Dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: Dict[str, str] = {}
    try:
        text = Path('/proc/cpuinfo').read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(':')
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_facts() -> dict:
    """What a CPU timing depends on: ``model`` (name), ``vendor``, ``family``, ``model_number``, ``stepping`` and the
    :data:`CPU_FEATURES` it has (``features``), from /proc/cpuinfo (the platform's processor string elsewhere)."""
    info = _cpuinfo()
    flags = set((info.get('flags') or info.get('Features') or '').split())
    return dict(model=cpu_model(), vendor=info.get('vendor_id') or info.get('CPU implementer') or platform.machine(),
                family=info.get('cpu family'), model_number=info.get('model'), stepping=info.get('stepping'),
                features=[f for f in CPU_FEATURES if f in flags])


def cpu_tag(model: Optional[str] = None) -> str:
    """A file-name tag for the CPU (``'intel-xeon'``, ``'amd-epyc'``) so that results from different CPUs sit side
    by side: the model name, lower case, without trademarks, "Processor", "CPU" or the clock."""
    name = (model or cpu_model()).lower()
    name = re.sub(r'\((r|tm)\)|\bprocessor\b|\bcpu\b|@.*$|\d+-core', ' ', name)
    return re.sub(r'[^a-z0-9]+', '-', name).strip('-') or 'unknown-cpu'


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else the platform's processor string."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def load_average() -> Optional[Dict[str, float]]:
    """The 1-, 5- and 15-minute load averages (None where the platform has none)."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return {'1min': round(one, 2), '5min': round(five, 2), '15min': round(fifteen, 2)}


def machine_info() -> dict:
    """What a latency figure depends on: CPU, cores, threads, GPU, library versions, and the load when asked."""
    info = dict(cpu=cpu_model(), cpu_facts=cpu_facts(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                python=platform.python_version(), torch=torch.__version__, platform=platform.platform(),
                load_average=load_average())
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    return info


def wait_for_load(max_load: float, timeout_s: float = 600.0, poll_s: float = 15.0,
                  log: Optional[Callable[[str], None]] = None) -> dict:
    """Waits until the 1-minute load average is below ``max_load`` (a shared machine), at most ``timeout_s``.

    Returns:
        dict: ``waited_s``, the load average when it returned and whether it was ``below`` the limit.
    """
    start = time.monotonic()
    while True:
        load = load_average()
        if load is None or load['1min'] < max_load:
            return dict(waited_s=round(time.monotonic() - start, 1), load_average=load, below=True)
        if time.monotonic() - start >= timeout_s:
            return dict(waited_s=round(time.monotonic() - start, 1), load_average=load, below=False)
        if log is not None:
            log(f'load average {load["1min"]} >= {max_load}: waiting ({time.monotonic() - start:.0f} s so far)')
        time.sleep(poll_s)


def matmul_peak(size: int = 2048, runs: int = 10, device: str = 'cpu', dtype: torch.dtype = torch.float32) -> dict:
    """The machine's matrix-multiply rate: ``2 * size**3`` FLOPs per ``torch.matmul`` of two square matrices.

    ``best_gflops`` (the fastest run) is the peak a model's attained rate is compared with; ``median_gflops`` shows
    how far a busy machine pulls it down. Uses torch's current thread count on CPU.
    """
    gen = torch.Generator(device='cpu').manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    with torch.inference_mode():
        for _ in range(2):
            torch.matmul(a, b)
        sync()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            torch.matmul(a, b)
            sync()
            times.append(time.perf_counter() - start)
    flops = 2.0 * size**3
    return dict(best_gflops=flops / min(times) / 1e9, median_gflops=flops / statistics.median(times) / 1e9,
                size=size, runs=runs, device=device, dtype=str(dtype).replace('torch.', ''),
                threads=torch.get_num_threads() if device == 'cpu' else None)


def write_text_atomic(path, text: str) -> None:
    """Writes ``text`` to ``path`` all or nothing (:func:`mmfastvit.fileio.atomic_write`)."""
    atomic_write(str(path), lambda f: f.write(text), mode='w')

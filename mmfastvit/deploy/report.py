"""The benchmark's report: the markdown table with its notes, and the files a run writes (``OUT.json``, ``OUT.md``
and the accuracy-vs-latency figure ``OUT.png``)."""
import json
from typing import Callable, List, Optional, Sequence

from .backbones import default_family, families
from .engines import all_backends, device_of
from .latency import write_text_atomic
from .plot import accuracy_latency_plot
from .runtimes import BackendUnavailable


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
    backends = [b for b in all_backends() if b in keys]
    header = ['network', 'batch', 'input', 'model'] + [f'{b} median ms (p90)' for b in backends]
    header += [f'{b} img/s' for b in backends]
    header += [f'{b} GFLOP/s' + (' (% peak)' if device_of(b) == 'cpu' and peak else '') for b in backends]
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
                elif device_of(b) == 'cpu' and peak:
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


def write_report(report: dict, out: str, plot: bool = True, log: Callable[[str], None] = print) -> List[str]:
    """Writes ``<out>.json``, ``<out>.md`` and (classifier variants, matplotlib installed) ``<out>.png``."""
    written = []
    json_path, md_path, png_path = out + '.json', out + '.md', out + '.png'
    write_text_atomic(json_path, json.dumps(report, indent=2, default=str) + '\n')
    written.append(json_path)
    known = families()
    measured = {res.get('family', default_family().family) for res in report['results'].values()}
    title = ' and '.join(facts.display_name for family, facts in known.items() if family in measured)
    write_text_atomic(md_path, f'# {title or default_family().display_name} latency\n\n' + markdown_table(report))
    written.append(md_path)
    if plot:
        try:
            if accuracy_latency_plot(report, png_path):
                written.append(png_path)
        except BackendUnavailable as err:
            log(f'no plot: {err}')
    return written

"""The accuracy-vs-latency figure of a benchmark report, as the FastViT paper's Figure 1 (matplotlib is imported when
used)."""
import os
import os.path as osp
import tempfile
from typing import Dict, List, Optional, Tuple

from .backbones import default_family, families, parse_variant
from .engines import ENGINES
from .loading import CLASSIFIER
from .runtimes import BackendUnavailable, probe


def accuracy_latency_plot(report: dict, path: str, backend: str = 'onnxruntime-cpu') -> Optional[str]:
    """The paper's Figure 1 for the measured variants: published ImageNet top-1 against our median latency on
    ``backend`` and the backends the engines draw (their ``plotted``: PyTorch on the CPU and in a CUDA graph,
    TensorRT), and timm's, when compared. Returns the path, or None when no classifier variant was measured.

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
    sources: Dict[str, str] = {}
    known = families()
    drawn = {b for engine in ENGINES.values() for b in engine.plotted}
    for res in report['results'].values():
        facts = known.get(res.get('family', default_family().family))
        top1 = _published_top1(res['source'].get('variant'))
        if res['kind'] != CLASSIFIER or facts is None or top1 is None:
            continue
        family = facts.display_name
        shapes[family], sources[family] = f'{res["shape"][0]}x{res["shape"][1]}', facts.top1_source
        variant = res['source']['variant']
        for key, summary in res['latency'].items():
            model, b = key.split('/', 1)
            if b == backend or b in drawn:
                series.setdefault(f'{family} ({"mmfastvit" if model == "ours" else "timm"}), {b}', []).append(
                    (summary['median_ms'] / res['batch'], top1, variant.upper().split('_')[-1]))
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


def _published_top1(variant: Optional[str]) -> Optional[float]:
    """The published top-1 of a variant: its backbone's ``model_name`` entry of the model index (the metafiles in
    ``configs/metafiles/``), None when unknown."""
    from mmfastvit.apis.model_index import model_infos
    try:
        family, arch = parse_variant(variant) if variant else (None, None)
    except ValueError:
        return None
    pattern = families()[family].model_name if family else None
    info = model_infos().get(pattern.format(arch=arch)) if pattern else None
    return info.metrics.get('Top 1 Accuracy') if info else None

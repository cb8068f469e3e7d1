"""The benchmark's options as one frozen object, from the command line to the report (torch and mmengine only).

:class:`BenchmarkSettings` declares each option once: its default, its ``tools/deploy/benchmark.py`` flag and help
(:mod:`mmfastvit.deploy.cli`), and its check. Constructing one validates and normalizes everything that does not
depend on the machine; :func:`~mmfastvit.deploy.benchmark.run` then resolves what does (the backends that can run
here, the thread count, the command) and :meth:`BenchmarkSettings.record` writes the report's ``settings``.
"""
import dataclasses
import datetime
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .. import __version__
from .backbones import canonical_variant, default_family, families, registered, variant_groups, variant_names
from .cli import option
from .engines import all_backends, check_backends
from .engines.onnxruntime import ORT_OPTIMIZATIONS
from .export import DEFAULT_OPSET, EXPORTERS, check_shape
from .export_form import REWRITES, check_rewrites
from .loading import BACKBONE, CLASSIFIER, PROTOCOL

PROTOCOLS = {
    'paper': dict(description='FastViT paper: warm-up 100, median of 100; batch 8 at 256x256 (classification; FMViT '
                              'classifiers at 224x224, their resolution), batch 2 at 512x512 (dense backbones)',
                  batch=None),
    'batch1': dict(description='batch 1 (as FMViT\'s Table 2: FMViT classifiers at 224x224, FastViT at 256x256), '
                               'warm-up 100, median of 100', batch=1),
}
TIMING = {False: 'round-robin between the models of one backend; backends one after the other',
          True: 'round-robin across every network and model of one backend (all networks interleaved); backends one '
                'after the other'}


def protocol_plan(protocol: str, kind: str, batch: Optional[int] = None, shape: Optional[Sequence[int]] = None,
                  family: Optional[str] = None) -> Tuple[int, Tuple[int, int]]:
    """``(batch, (H, W))`` of a ``family`` network (default: FastViT) of ``kind`` under ``protocol``, unless
    overridden: classifiers at their family's ``classifier_input_size`` (FMViT's 224x224), the rest as in
    :data:`~mmfastvit.deploy.loading.PROTOCOL`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f'protocol "{protocol}" is not one of {list(PROTOCOLS)}')
    if kind not in PROTOCOL:
        raise ValueError(f'kind "{kind}" is not one of {list(PROTOCOL)}')
    known = families()
    family = family or default_family().family
    if family not in known:
        raise ValueError(f'family "{family}" is not one of {list(known)}')
    b = batch or PROTOCOLS[protocol]['batch'] or PROTOCOL[kind]['batch']
    if shape:
        return b, tuple(shape)
    side = known[family].classifier_input_size
    return b, (side, side) if kind == CLASSIFIER else tuple(PROTOCOL[kind]['shape'])


def _variants_help() -> str:
    groups = {family: group for group, family in variant_groups().items()}
    return 'variants built directly: ' + ', '.join(
        ' '.join(variant_names(f.family)) + (f' (or "{groups[f.family]}")' if f.family in groups else '')
        for f in registered())


def _positive(name: str, value: Optional[int], minimum: int = 1) -> None:
    if value is not None and (not isinstance(value, int) or value < minimum):
        raise ValueError(f'--{name.replace("_", "-")} {value!r} must be an integer >= {minimum}')


@dataclass(frozen=True)
class BenchmarkSettings:
    """The options of a benchmark run (see :mod:`mmfastvit.deploy.benchmark` and ``tools/deploy/benchmark.py``,
    whose flags these fields declare).

    Attributes:
        variants (tuple[str]): Variants built directly (:func:`~mmfastvit.deploy.backbones.variant_names`; a
            ``variant_group`` such as ``'all'`` or ``'fmvit'`` stands for a family's), normalized and deduplicated.
        configs (tuple[str]): Configs whose models to time.
        checkpoints (tuple[str]): Checkpoints for ``configs``, in order (default: random initialization).
        dense (bool): Variants as dense backbones (``out_indices`` 0-3).
        backends (tuple[str], optional): Backends to time; None: every one that can run here.
        protocol (str): ``'paper'`` or ``'batch1'`` (:data:`PROTOCOLS`).
        batch (int, optional), shape (tuple[int, int], optional): Override the protocol's batch / input.
        warmup (int), runs (int): Warm-up and timed runs per candidate.
        threads (int, optional): CPU threads for PyTorch and ONNX Runtime; None: torch's.
        compare_timm (bool): Also time timm's reparameterized model with the same weights.
        interleave_networks (bool): Time every network together, round-robin within each backend.
        ort_optimization (str), ort_spinning (bool): ONNX Runtime's graph optimization level and spin-waiting.
        exporter (str), opset (int), rewrites (tuple[str]): How our model is exported to ONNX.
        cuda_fp16 (bool): GPU backends in float16 (else float32).
        measure_peak (bool): Measure the machine's matrix-multiply peak.
        work_dir (str, optional): Keep the exported models here (default: a temporary folder).
        seed (int): Seed of the weights and of the input batch.
        command (str, optional): The command recorded in the report (default: this process's).

    Raises:
        ValueError: naming the bad option and value, and the valid choices.
    """

    variants: Tuple[str, ...] = option((), '--variants', nargs='+', type=str.lower, help=_variants_help)
    configs: Tuple[str, ...] = option((), '--configs', nargs='+', help='configs (classifier, detector, segmentor, ...)')
    checkpoints: Tuple[str, ...] = option(
        (), '--checkpoints', nargs='+',
        help='checkpoints for --configs, in order (default: the config\'s random initialization)')
    dense: bool = option(False, '--dense', action='store_true', help='variants as dense backbones (out_indices 0-3)')
    backends: Optional[Tuple[str, ...]] = option(
        None, '--backends', nargs='+',
        help=lambda: f'subset of {" ".join(all_backends())} (default: all that can run here)')
    protocol: str = option('paper', '--protocol', choices=list(PROTOCOLS),
                           help='paper: batch 8 @256 (cls) / batch 2 @512 (dense); batch1: batch 1 (FMViT)')
    batch: Optional[int] = option(None, '--batch', type=int, help='override the protocol\'s batch')
    shape: Optional[Tuple[int, int]] = option(None, '--shape', type=int, nargs='+',
                                              help='override the input H [W] (multiples of 32)')
    warmup: int = option(100, '--warmup', type=int, help='warm-up runs per candidate (default 100)')
    runs: int = option(100, '--runs', type=int, help='timed runs per candidate (default 100)')
    threads: Optional[int] = option(None, '--threads', type=int,
                                    help='CPU threads for PyTorch and ONNX Runtime (default: torch\'s)')
    compare_timm: bool = option(
        False, '--compare-timm', action='store_true',
        help='also time timm\'s reparameterized model (same weights, same export, same session; FastViT only)')
    interleave_networks: bool = option(
        False, '--interleave', action='store_true',
        help='time all networks together, round-robin within each backend, so that ratios between networks are '
             'taken under the same conditions (default: one network after the other)')
    ort_optimization: str = option('all', '--ort-optimization', choices=list(ORT_OPTIMIZATIONS))
    ort_spinning: bool = option(
        False, '--ort-spinning', action='store_true',
        help='let ONNX Runtime\'s idle threads spin (its default; off here because sessions timed round-robin then '
             'steal each other\'s cores)')
    exporter: str = option('torchscript', '--exporter', choices=EXPORTERS)
    opset: int = option(DEFAULT_OPSET, '--opset', type=int)
    rewrites: Tuple[str, ...] = option(REWRITES, '--rewrites', nargs='*', choices=list(REWRITES),
                                       help='export rewrites of our model (default all; none: --rewrites)')
    cuda_fp16: bool = option(True, '--cuda-fp32', action='store_false',
                             help='GPU backends in float32 (default float16)')
    measure_peak: bool = option(True, '--no-peak', action='store_false',
                                help='skip the matrix-multiply peak measurement')
    work_dir: Optional[str] = option(None, '--work-dir',
                                     help='keep the exported models here (default: a temporary folder)')
    seed: int = option(0, '--seed', type=int)
    command: Optional[str] = option(None)

    def __post_init__(self) -> None:
        def set_(name, value):  # frozen: the values are normalized once, here
            object.__setattr__(self, name, value)

        set_('variants', self._parse_variants(self.variants))
        if self.compare_timm:
            no_timm = sorted({f.display_name for f in registered() if not f.timm_model})
            with_timm = [f.display_name for f in registered() if f.timm_model]
            untimmed = [v for v in self.variants if not families()[self._family(v)].timm_model]
            if untimmed:
                raise ValueError(f'--compare-timm compares {" / ".join(with_timm)} variants only (timm has no '
                                 f'{" / ".join(no_timm)}): drop {untimmed}')
        set_('configs', tuple(self.configs))
        set_('checkpoints', tuple(self.checkpoints))
        if not self.variants and not self.configs:
            raise ValueError('give --variants and/or --configs')
        if len(self.checkpoints) > len(self.configs):
            raise ValueError(f'more --checkpoints ({len(self.checkpoints)}) than --configs ({len(self.configs)})')
        if self.backends is not None:
            set_('backends', check_backends(self.backends))
        if self.protocol not in PROTOCOLS:
            raise ValueError(f'protocol "{self.protocol}" is not one of {list(PROTOCOLS)}')
        if self.shape:
            set_('shape', check_shape(self.shape))
        _positive('batch', self.batch)
        _positive('runs', self.runs)
        _positive('warmup', self.warmup, 0)
        _positive('threads', self.threads)
        if self.compare_timm and (self.configs or self.dense):
            raise ValueError('--compare-timm compares classifier variants only (timm builds no dense backbone here)')
        if self.ort_optimization not in ORT_OPTIMIZATIONS:
            raise ValueError(f'--ort-optimization "{self.ort_optimization}" is not one of {list(ORT_OPTIMIZATIONS)}')
        if self.exporter not in EXPORTERS:
            raise ValueError(f'exporter "{self.exporter}" is not one of {list(EXPORTERS)}')
        set_('rewrites', check_rewrites(self.rewrites))

    @staticmethod
    def _family(variant: str) -> str:
        return next(f.family for f in registered() if variant in variant_names(f.family))

    @staticmethod
    def _parse_variants(requested: Sequence[str]) -> Tuple[str, ...]:
        groups = variant_groups()
        variants: List[str] = []
        bad = []
        for name in requested:
            if name in groups:
                variants += variant_names(groups[name])
                continue
            try:
                variants.append(canonical_variant(name))
            except ValueError:
                bad.append(name)
        if bad:
            raise ValueError(f'unknown variants {bad}; choose from {variant_names()} (or '
                             f'{", ".join(f"{chr(34)}{g}{chr(34)}" for g in groups)})')
        return tuple(dict.fromkeys(variants))

    def plan(self, kind: str, family: Optional[str] = None) -> Tuple[int, Tuple[int, int]]:
        """``(batch, (H, W))`` of a ``family`` network of ``kind`` in this run (:func:`protocol_plan`)."""
        return protocol_plan(self.protocol, kind, self.batch, self.shape, family)

    def replace(self, **changes) -> 'BenchmarkSettings':
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def record(self, unavailable: Dict[str, str], versions: Dict[str, Optional[str]], load_before: Optional[dict],
               load_after: Optional[dict]) -> dict:
        """The report's ``settings``: these options as run (resolved by :func:`~mmfastvit.deploy.benchmark.run`),
        with what the run found (``unavailable`` backends and why, package ``versions``, load averages)."""
        shapes = {('shape_classifier' if f.family == default_family().family else f'shape_classifier_{f.family}'):
                  list(self.plan(CLASSIFIER, f.family)[1]) for f in registered()}
        return dict(protocol=self.protocol, protocol_description=PROTOCOLS[self.protocol]['description'],
                    warmup=self.warmup, runs=self.runs, batch_classifier=self.plan(CLASSIFIER)[0],
                    batch_backbone=self.plan(BACKBONE)[0], **shapes, shape_backbone=list(self.plan(BACKBONE)[1]),
                    threads=self.threads, dtype_cpu='float32',
                    cuda_precision='float16' if self.cuda_fp16 else 'float32', backends=list(self.backends or ()),
                    unavailable=unavailable, compare_timm=self.compare_timm,
                    onnx=dict(exporter=self.exporter, opset=self.opset, rewrites_ours=list(self.rewrites),
                              rewrites_timm=[]),
                    onnxruntime_session=dict(graph_optimization_level=self.ort_optimization,
                                             intra_op_num_threads=self.threads, inter_op_num_threads=1,
                                             execution_mode='sequential', allow_spinning=self.ort_spinning,
                                             same_for_every_model=True),
                    timing=TIMING[self.interleave_networks], seed=self.seed, versions=versions, mmfastvit=__version__,
                    load_before=load_before, load_after=load_after, command=self.command,
                    date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))

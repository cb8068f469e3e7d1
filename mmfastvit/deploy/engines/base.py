"""The shape every inference engine has, the registry that lists them, and what the export and the benchmark hand
an engine (torch only).

An engine is one class, registered with :func:`register_engine`, with:

* whether it can run here, and why not: :meth:`Engine.check_export` (an export request; raises) and
  :meth:`Engine.why_unavailable` (a timed backend; returns the reason);
* :meth:`Engine.export`: writes its files for ``tools/deploy/export.py --backend <export_backend>`` into the job's
  staging folder;
* :meth:`Engine.verify`: runs what it wrote and compares it with PyTorch;
* :meth:`Engine.runner`: a timed :class:`Candidate` for each of its benchmark ``backends``
  (``tools/deploy/benchmark.py --backends``), each on one device.

An engine without an export format (PyTorch) has no ``export_backend``; one that cannot be timed here (Core ML) or is
not a benchmark backend (TorchScript) has no ``backends``. An engine may take its own export precision and options
(``export_options``), read the ONNX graph another engine exports (``reads_onnx``) or write a format of its own.
"""
import copy
import os.path as osp
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn


MEMORY_RUNS = 3  # runs while a candidate's memory is measured
ENGINES: Dict[str, 'Engine'] = {}  # name -> instance, in registration order
OPTIONS = ('simplify', 'fp16', 'dynamic_batch')  # export options that only some engines take


class Candidate:
    """One timed thing: a zero-argument ``call``, on ``device`` (``'cpu'`` / ``'cuda'``)."""

    def __init__(self, model: str, backend: str, call: Callable[[], object], device: str,
                 memory_mib: Optional[float] = None, note: str = '') -> None:
        self.model, self.backend, self.call, self.device = model, backend, call, device
        self.memory_mib, self.note = memory_mib, note

    @property
    def key(self) -> str:
        return f'{self.model}/{self.backend}'


@dataclass
class ExportJob:
    """One export in progress: what an engine's :meth:`~Engine.export` and :meth:`~Engine.verify` read and fill.

    Attributes:
        deployable (Deployable): The network.
        request (ExportRequest): The export's options (:class:`mmfastvit.deploy.export.ExportRequest`).
        name (str): File stem.
        x (Tensor): The float32 input batch the checks run on.
        expected (tuple[Tensor]): The fused model's outputs on ``x``.
        form (nn.Module): The export form (:mod:`mmfastvit.deploy.export_form`).
        stage (str): The private folder to write into.
        log (callable): Progress lines.
        files (dict): Written files by kind (``'onnx'``: ``'<name>.onnx'``), relative to ``stage``.
        info (dict): What each step made, by engine format (the report's ``export``).
        verification (dict): Each engine's run compared with PyTorch (the report's ``verification``).
        extra (dict): Data an engine's export needs beyond ``x``: ``'calibration'`` and ``'check_images'``
            (:class:`~mmfastvit.deploy.calibration.ImageSet`) for reduced precision.
    """

    deployable: object
    request: object
    name: str
    x: Tensor
    expected: Tuple[Tensor, ...]
    form: nn.Module
    stage: str
    log: Callable[[str], None] = print
    files: Dict[str, str] = field(default_factory=dict)
    info: Dict[str, dict] = field(default_factory=dict)
    verification: Dict[str, dict] = field(default_factory=dict)
    extra: Dict[str, object] = field(default_factory=dict)

    def path(self, kind: str) -> str:
        """The staged path of ``files[kind]``."""
        return osp.join(self.stage, self.files[kind])


@dataclass
class RunTarget:
    """One model of a benchmarked network (ours, or timm's beside it), ready for the engines' timed runners.

    Attributes:
        who (str): ``'ours'`` or ``'timm'``.
        eager (nn.Module): The fused model PyTorch runs.
        graph (nn.Module): What is exported (our export form; timm's fused model as it is).
        x (Tensor): The float32 CPU input batch.
        expected (tuple[Tensor]): Our fused model's outputs on ``x``.
        output_names (tuple[str]): The exported outputs' names.
        stem (str): File stem in ``work_dir``: ``<network>_<who>_<H>x<W>_b<N>``.
        work_dir (str): Where exported files go.
        settings (BenchmarkSettings): The run's options (:class:`mmfastvit.deploy.settings.BenchmarkSettings`).
        log (callable): Progress lines.
        cache (dict): What engines share between backends of this model (a GPU copy, ONNX files).
    """

    who: str
    eager: nn.Module
    graph: nn.Module
    x: Tensor
    expected: Tuple[Tensor, ...]
    output_names: Tuple[str, ...]
    stem: str
    work_dir: str
    settings: object
    log: Callable[[str], None] = print
    cache: dict = field(default_factory=dict)

    def onnx(self, fp16: bool = False) -> dict:
        """``{'path', 'nodes'}`` of this model's ONNX graph (``_fp16``: half precision), exported once."""
        key = ('onnx', fp16)
        if key not in self.cache:
            from .onnxruntime import export_onnx  # the ONNX format is ONNX Runtime's engine's
            path = osp.join(self.work_dir, f'{self.stem}{"_fp16" if fp16 else ""}.onnx')
            graph, x = (copy.deepcopy(self.graph).half(), self.x.half()) if fp16 else (self.graph, self.x)
            info = export_onnx(graph, x, path, self.output_names, self.settings.opset, self.settings.exporter,
                               dynamic_batch=False, simplify=False, log=lambda m: None)
            self.cache[key] = dict(path=path, nodes=info['nodes'])
        return self.cache[key]

    def cuda_input(self) -> Tensor:
        """``x`` on the GPU in the run's CUDA precision (float16 unless ``cuda_fp16`` is off)."""
        if 'cuda_input' not in self.cache:
            self.cache['cuda_input'] = self.x.to('cuda', self.cuda_dtype)
        return self.cache['cuda_input']

    @property
    def cuda_dtype(self) -> torch.dtype:
        return torch.float16 if self.settings.cuda_fp16 else torch.float32


class Engine:
    """Base of the inference engines; see the module docstring. Subclasses set the class attributes and override the
    methods their attributes promise."""

    name: str = ''  # registry key, e.g. 'onnxruntime'
    title: str = ''  # in messages, e.g. 'ONNX Runtime'
    export_backend: Optional[str] = None  # tools/deploy/export.py --backend value
    export_options: Tuple[str, ...] = ()  # which of OPTIONS its export takes
    default_fp16: bool = False  # export precision when the request leaves it open
    half_inputs: bool = False  # an FP16 export has half-precision inputs and outputs
    reads_onnx: bool = False  # its export or its runners start from the exported ONNX graph
    backends: Mapping[str, str] = {}  # benchmark backend -> device ('cpu' / 'cuda')
    precisions: Tuple[str, ...] = ()  # the --precision values its export takes (none: --fp16 or its own)
    packages: Tuple[str, ...] = ()  # packages whose versions a benchmark report records
    plotted: Tuple[str, ...] = ()  # its backends drawn in the accuracy-vs-latency figure

    # -- whether it can run here ----------------------------------------------------------------------------------

    def check_export(self, request) -> None:
        """Refuses an option this engine does not take (ValueError), then a missing package (BackendUnavailable);
        nothing is loaded or written."""
        for option in OPTIONS:
            if getattr(request, option) and option not in self.export_options:
                raise ValueError(self.refusal(option))
        self.require(request)

    def refusal(self, option: str) -> str:
        """Why this engine's export refuses ``option``."""
        takers = [e.export_backend for e in ENGINES.values() if e.export_backend and option in e.export_options]
        if option == 'simplify':
            return f'--simplify applies to ONNX graphs, not to backend "{self.export_backend}"'
        if option == 'fp16':
            return f'--fp16 is for the {_and(takers)} backends; {self.title} keeps float32'
        return f'a dynamic batch is for the {_and(takers)} backends, not "{self.export_backend}"'

    def require(self, request) -> None:
        """Raises :class:`BackendUnavailable` when a package the export needs is missing. Nothing by default."""

    def default_precision(self) -> Optional[str]:
        """The export precision a request that names none gets (None: the engine has no ``precisions``)."""
        return None

    def why_unavailable(self, backend: str) -> Optional[str]:
        """Why ``backend`` cannot be timed here, or None (beyond the GPU check every CUDA backend has)."""
        return None

    # -- export, verify -------------------------------------------------------------------------------------------

    def export(self, job: ExportJob) -> None:
        """Writes this engine's files for ``job`` into ``job.stage`` and records them in ``job.files`` / ``job.info``.
        """
        raise NotImplementedError(f'{self.title} has no export format')

    def verify(self, job: ExportJob) -> None:
        """Runs what :meth:`export` wrote, compares it with ``job.expected`` and records the result in
        ``job.verification`` (``verified: False`` with the reason when it cannot run here)."""
        raise NotImplementedError(f'{self.title} has no export format')

    # -- timed runner ---------------------------------------------------------------------------------------------

    def runner(self, backend: str, target: RunTarget) -> Tuple[Candidate, Optional[dict]]:
        """A timed candidate for ``target`` on ``backend``, built and run :data:`MEMORY_RUNS` times (its memory
        measured), and the check of its outputs against PyTorch (None when not checked)."""
        raise NotImplementedError(f'{self.title} has no timed backend')


def _and(words: Sequence[str]) -> str:
    return ', '.join(words[:-1]) + ' and ' + words[-1] if len(words) > 1 else ''.join(words)


def register_engine(cls: type) -> type:
    """Class decorator: registers an :class:`Engine` subclass (one instance) under its ``name``.

    Raises:
        KeyError: its name, export backend or one of its benchmark backends is taken.
    """
    engine = cls()
    taken = {e.name for e in ENGINES.values()} | {e.export_backend for e in ENGINES.values()} | set(all_backends())
    claims = [engine.name] + ([engine.export_backend] if engine.export_backend else []) + list(engine.backends)
    clash = [c for c in claims if c in taken]
    if clash:
        raise KeyError(f'engine {cls.__name__}: {clash} already registered')
    ENGINES[engine.name] = engine
    return cls


def export_backends() -> List[str]:
    """The ``--backend`` values of ``tools/deploy/export.py``: ``['onnx', 'coreml', 'tensorrt', 'torchscript']``."""
    return [e.export_backend for e in ENGINES.values() if e.export_backend]


def export_engine(backend: str) -> Engine:
    """The engine that exports ``backend``.

    Raises:
        ValueError: naming the bad value and the valid choices.
    """
    for engine in ENGINES.values():
        if engine.export_backend == backend:
            return engine
    raise ValueError(f'backend "{backend}" is not one of {export_backends()}')


def all_backends(device: Optional[str] = None) -> List[str]:
    """The benchmark backends, CPU ones first, each device in registration order (of ``device`` only if given)."""
    devices = [device] if device else ['cpu', 'cuda']
    return [b for d in devices for e in ENGINES.values() for b, dev in e.backends.items() if dev == d]


def device_of(backend: str) -> Optional[str]:
    """``'cpu'`` / ``'cuda'`` for a registered benchmark backend, None for another name."""
    return next((e.backends[backend] for e in ENGINES.values() if backend in e.backends), None)


def backend_engine(backend: str) -> Engine:
    """The engine that times ``backend`` (a name :func:`check_backends` accepted)."""
    return next(e for e in ENGINES.values() if backend in e.backends)


def check_backends(backends: Sequence[str]) -> Tuple[str, ...]:
    """``backends`` as a tuple.

    Raises:
        ValueError: naming the unknown ones and the valid choices.
    """
    unknown = [b for b in backends if b not in all_backends()]
    if unknown:
        raise ValueError(f'unknown backends {unknown}; choose from {all_backends()}')
    return tuple(backends)


def available_backends(requested: Optional[Sequence[str]] = None) -> Tuple[List[str], Dict[str, str]]:
    """The backends that can run here among ``requested`` (all by default), and why the others cannot."""
    requested = list(check_backends(requested or all_backends()))
    why: Dict[str, str] = {}
    cuda = torch.cuda.is_available()
    for backend in requested:
        if device_of(backend) == 'cuda' and not cuda:
            why[backend] = 'no CUDA GPU (torch.cuda.is_available() is False)'
            continue
        reason = backend_engine(backend).why_unavailable(backend)
        if reason:
            why[backend] = reason
    return [b for b in requested if b not in why], why

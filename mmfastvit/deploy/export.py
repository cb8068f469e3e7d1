"""Export a deployable network (FastViT, FMViT) to ONNX, OpenVINO (x86 CPUs, fp32 / bf16 / int8), Core ML (iPhone),
TensorRT or TorchScript, checking every step.

:func:`export` takes a :class:`~mmfastvit.deploy.loading.Deployable` (from a config + checkpoint, or a variant) and an
:class:`ExportRequest` (the backend and its options), and

1. switches it to the deepest fused form (``reparameterize_model(model, 'full')``) and checks the fused outputs
   against the unfused ones on a seeded random batch;
2. builds the export form (:mod:`mmfastvit.deploy.export_form`: exact rewrites that the engines run faster) and
   checks it against the fused model;
3. exports, in a private staging folder beside the output folder, through the backend's engine
   (:mod:`mmfastvit.deploy.engines`);
4. runs the exported model where its engine runs here (ONNX Runtime; TorchScript; TensorRT on an NVIDIA GPU; Core ML
   only on macOS) and compares it with PyTorch; the report says when a check could not run;
5. moves the files into the output folder only when all of that passed, with a JSON report beside them.

A failure at any step leaves the output folder as it was. Imports torch and mmengine only; onnx, onnxruntime,
onnxsim, coremltools and tensorrt are imported when their backend is used.
"""
import datetime
import json
import os
import os.path as osp
import shutil
import tempfile
from dataclasses import MISSING, dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch

from .. import __version__
from .cli import option
from .engines import ENGINES, Engine, ExportJob, export_backends, export_engine
from .export_form import REWRITES, check_rewrites
from .latency import machine_info
from .loading import INPUT_NAME, Deployable, default_shape
from .verify import ExportError, fuse_and_verify

EXPORTERS = ('torchscript', 'dynamo')
DEFAULT_OPSET = 18
SIZE_MULTIPLE = 32  # the output stride of FastViT and FMViT
CALIBRATION_IMAGES = 300  # int8 calibration images (NNCF's default subset size)
CHECK_IMAGES = 200  # val images of the accuracy check of bf16 / int8

__all__ = ['DEFAULT_OPSET', 'EXPORTERS', 'ExportError', 'ExportRequest', 'check_shape', 'export']


def check_shape(shape: Sequence[int]) -> Tuple[int, int]:
    """``(H, W)`` from ``[S]`` or ``[H, W]``, each a positive multiple of 32.

    Raises:
        ValueError: naming the bad value.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        shape = shape * 2
    if len(shape) != 2:
        raise ValueError(f'shape {shape}: give H or H W')
    for size in shape:
        if size < SIZE_MULTIPLE or size % SIZE_MULTIPLE:
            raise ValueError(f'shape {shape[0]}x{shape[1]}: each side must be a positive multiple of {SIZE_MULTIPLE} '
                             f'(the backbone\'s output stride), {size} is not')
    return shape


@dataclass(frozen=True)
class ExportRequest:
    """What to export and how: the options of ``tools/deploy/export.py`` (its flags come from these fields).

    Constructing one checks everything that can be checked before a model is loaded: the backend (and that its
    packages import here), the exporter, the options the backend takes, the shape, the batch and the rewrites.

    Attributes:
        backend (str): ``'onnx'``, ``'openvino'``, ``'coreml'``, ``'tensorrt'`` or ``'torchscript'`` (the engines'
            export backends).
        shape (tuple[int, int], optional): Input ``(H, W)`` (or one size), multiples of 32. Defaults to the
            deployable's (:func:`~mmfastvit.deploy.loading.default_shape`).
        batch (int): Batch of the traced input (and of the static graph). Defaults to 1.
        fp16 (bool, optional): Half precision. Defaults to the engine's: FP16 for Core ML (FP32 keeps a model off
            the Neural Engine), FP32 for ONNX / TensorRT (an FP16 ONNX has FP16 inputs and outputs, and TensorRT
            builds an FP16 engine from it). Not for TorchScript.
        opset (int): ONNX opset. Defaults to 18.
        exporter (str): ``'torchscript'`` (``torch.onnx.export(dynamo=False)``) or ``'dynamo'``. Defaults to
            ``'torchscript'``, which gave the faster ONNX Runtime graph here.
        dynamic_batch (bool): ONNX with a symbolic batch axis (TensorRT: a profile from 1 to ``max_batch``).
        max_batch (int): Largest batch of the TensorRT profile with ``dynamic_batch``. Defaults to 32.
        simplify (bool): Run onnxsim on the ONNX graph.
        rewrites (tuple[str]): Export rewrites (:func:`~mmfastvit.deploy.export_form.to_export_form`).
        name (str, optional): File stem; defaults to ``<name>_<H>x<W>_b<N>[_fp16]`` (``bdyn`` for a dynamic batch).
        workspace_gib (float): TensorRT builder workspace.
        precision (str, optional): OpenVINO's ``'fp32'``, ``'bf16'`` (the default where the CPU has bfloat16
            arithmetic) or ``'int8'``; other backends take none.
        calib_config (str, optional): Dataset config of the int8 calibration images (its train split) and of the
            accuracy check (its val split). Defaults to the model's config.
        calib_images (int): int8 calibration images. Defaults to 300.
        check_images (int, optional): Val images of the accuracy check (top-1 agreement with fp32, logit error,
            accuracy). Defaults to 200 for bf16 / int8 where a dataset config is known; 0 skips it.
        min_agreement (float): Least top-1 agreement with fp32 on the check images; below it nothing is written.
        keep_float (tuple[str]): More layers (ONNX node names) int8 leaves in higher precision.
        seed (int): Seed of the random verification batch (and of the image choice).

    Raises:
        ValueError: bad backend / exporter / shape / batch / rewrite, or an option the backend does not take.
        BackendUnavailable: a package the backend needs cannot be imported (or TensorRT has no GPU).
    """

    backend: str = option(MISSING, '--backend', required=True,
                          help=lambda: f'one of {", ".join(export_backends())}')
    shape: Optional[Tuple[int, int]] = option(
        None, '--shape', type=int, nargs='+',
        help='input H [W], multiples of 32 (default: 256 for FastViT classifiers, 224 for FMViT classifiers, 512 for '
             'backbones)')
    batch: int = option(1, '--batch', type=int, help='batch of the exported graph (default 1)')
    fp16: Optional[bool] = option(
        None, '--fp16', action='store_true',
        help='half precision (the default for coreml; onnx / tensorrt default to float32)',
        also=((('--fp32',), dict(action='store_false', help='float32 Core ML model (not on the ANE)')),))
    opset: int = option(DEFAULT_OPSET, '--opset', type=int, help=f'ONNX opset (default {DEFAULT_OPSET})')
    exporter: str = option('torchscript', '--exporter', choices=EXPORTERS,
                           help='torch.onnx exporter (default torchscript, i.e. dynamo=False)')
    dynamic_batch: bool = option(False, '--dynamic-batch', action='store_true',
                                 help='symbolic batch axis (onnx, tensorrt)')
    max_batch: int = option(32, '--max-batch', type=int, help='TensorRT profile maximum with --dynamic-batch')
    simplify: bool = option(False, '--simplify', action='store_true', help='run onnxsim on the ONNX graph')
    rewrites: Tuple[str, ...] = option(REWRITES, '--rewrites', nargs='*', choices=list(REWRITES),
                                       help='export rewrites of the fused model (default: all; none: --rewrites)')
    name: Optional[str] = option(None, '--name', help='file stem (default <config>_<H>x<W>_b<N>[_fp16])')
    workspace_gib: float = option(4.0, '--workspace-gib', type=float, help='TensorRT builder workspace')
    precision: Optional[str] = option(
        None, '--precision', choices=['fp32', 'bf16', 'int8'],
        help='openvino: fp32, bf16 (the default where the CPU has bfloat16 arithmetic) or int8 (calibrated on '
             '--calib-config images)')
    calib_config: Optional[str] = option(
        None, '--calib-config',
        help='dataset config whose images calibrate int8 and check the accuracy of bf16 / int8 (default: the '
             'model\'s config)')
    calib_images: int = option(CALIBRATION_IMAGES, '--calib-images', type=int,
                               help=f'calibration images, from the train split (default {CALIBRATION_IMAGES})')
    check_images: Optional[int] = option(
        None, '--check-images', type=int,
        help='val images on which the export is compared with PyTorch fp32 (top-1 agreement, logit error, '
             f'accuracy); default {CHECK_IMAGES} for bf16 / int8 where a dataset config is known, 0 skips')
    min_agreement: float = option(0.99, '--min-agreement', type=float,
                                  help='least top-1 agreement with fp32 on the check images (default 0.99)')
    keep_float: Tuple[str, ...] = option((), '--keep-float', nargs='+',
                                         help='more layers (ONNX node names) to keep out of int8')
    seed: int = option(0)

    def __post_init__(self) -> None:
        engine = export_engine(self.backend)
        if self.exporter not in EXPORTERS:
            raise ValueError(f'exporter "{self.exporter}" is not one of {list(EXPORTERS)}')
        # frozen: the values are normalized once, here
        object.__setattr__(self, 'fp16', engine.default_fp16 if self.fp16 is None else bool(self.fp16))
        object.__setattr__(self, 'keep_float', tuple(self.keep_float))
        self._check_precision(engine)
        engine.check_export(self)
        if self.shape is not None:
            object.__setattr__(self, 'shape', check_shape(self.shape))
        if not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f'batch {self.batch!r} must be a positive integer (--batch {self.batch} must be >= 1)')
        object.__setattr__(self, 'rewrites', check_rewrites(self.rewrites))

    def _check_precision(self, engine: Engine) -> None:
        if self.precision is None:
            object.__setattr__(self, 'precision', engine.default_precision())
        elif self.precision not in engine.precisions:
            takers = [e.export_backend for e in ENGINES.values() if e.precisions]
            raise ValueError(f'--precision {self.precision} is for the {", ".join(takers)} backend(s); '
                             f'backend "{self.backend}" takes ' + (f'{list(engine.precisions)}' if engine.precisions
                                                                     else 'its own precision (--fp16 where offered)'))
        if self.precision != 'int8' and (self.keep_float or self.calib_images != CALIBRATION_IMAGES):
            raise ValueError('--keep-float and --calib-images apply to --precision int8 only')
        for name in ('calib_images', 'check_images'):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < (1 if name == 'calib_images' else 0)):
                raise ValueError(f'--{name.replace("_", "-")} {value!r} must be an integer >= '
                                 f'{1 if name == "calib_images" else 0}')
        if not 0 <= self.min_agreement <= 1:
            raise ValueError(f'--min-agreement {self.min_agreement!r} must be between 0 and 1')

    def image_sets(self, deployable: Deployable, shape: Tuple[int, int], log: Callable[[str], None]) -> dict:
        """The calibration images (int8) and the accuracy-check images (bf16 / int8) from the dataset config.

        Raises:
            ValueError: int8 without a dataset config.
        """
        reduced = self.precision in ('bf16', 'int8')
        config = self.calib_config or deployable.source.get('config')
        options = None if self.calib_config else deployable.source.get('cfg_options') or None
        from .calibration import dataset_batches  # torch only; the task package is imported when images are read
        sets = {}
        if self.precision == 'int8':
            if not config:
                raise ValueError('--precision int8 needs calibration images: give --calib-config (a dataset config)')
            sets['calibration'] = dataset_batches(config, 'train', self.calib_images, shape, options, self.seed, log)
        asked = self.check_images is not None or self.calib_config is not None
        count = self.check_images if self.check_images is not None else (CHECK_IMAGES if config and reduced else 0)
        if count and self.engine.precisions:  # fp32 too when asked: the baseline of the same check
            if not config:
                raise ValueError('--check-images needs a dataset config: give --calib-config')
            try:
                sets['check_images'] = dataset_batches(config, 'val', count, shape, options, self.seed, log)
            except (FileNotFoundError, ValueError) as err:
                if asked:
                    raise
                # the default check, on a machine without the config's dataset: the export goes on without it
                log(f'accuracy check skipped: the val images of {config} cannot be read here ({err}); give '
                    f'--calib-config / --check-images to require it')
        return sets

    @property
    def engine(self) -> Engine:
        """The engine that exports :attr:`backend`."""
        return export_engine(self.backend)

    def stem(self, deployable: Deployable, shape: Tuple[int, int]) -> str:
        """:attr:`name`, or ``<name>_<H>x<W>_b<N>[_fp16]`` (``bdyn`` for a dynamic batch)."""
        return self.name or (f'{deployable.name}_{shape[0]}x{shape[1]}_b{"dyn" if self.dynamic_batch else self.batch}'
                             + ('_fp16' if self.fp16 else '') + (f'_{self.precision}' if self.precision else ''))


# ---------------------------------------------------------------------------------------------------------------------
# staging: all or nothing

def _commit(stage: str, out_dir: str) -> List[str]:
    """Moves everything in ``stage`` into ``out_dir`` (replacing same-named entries) and removes ``stage``."""
    os.makedirs(out_dir, exist_ok=True)
    moved = []
    for name in sorted(os.listdir(stage)):
        src, dst = osp.join(stage, name), osp.join(out_dir, name)
        if osp.isdir(src) and osp.lexists(dst):  # an .mlpackage: swap directories, then drop the old one
            old = tempfile.mkdtemp(prefix=f'.{name}.old-', dir=out_dir)
            os.rmdir(old)
            os.replace(dst, old)
            os.replace(src, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(src, dst)
        moved.append(dst)
    shutil.rmtree(stage, ignore_errors=True)
    return moved


def _stage_dir(out_dir: str) -> Tuple[str, List[str]]:
    """A private folder on the same file system as ``out_dir`` and the folders created to hold it."""
    out_dir = osp.abspath(out_dir)
    parent, created = osp.dirname(out_dir), []
    probe_dir = parent
    while not osp.isdir(probe_dir):
        created.append(probe_dir)
        probe_dir = osp.dirname(probe_dir)
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f'.{osp.basename(out_dir)}.export-', dir=parent), created


def export(deployable: Deployable, backend: Union[str, ExportRequest], out_dir: str,
           log: Callable[[str], None] = print, **options) -> dict:
    """Fuses, exports and verifies ``deployable``; see the module docstring.

    Args:
        deployable (Deployable): From :func:`~mmfastvit.deploy.loading.load_from_config` or
            :func:`~mmfastvit.deploy.loading.from_variant`.
        backend (str | ExportRequest): The backend (``'onnx'``, ``'coreml'``, ``'tensorrt'``, ``'torchscript'``),
            with ``options`` the other fields of :class:`ExportRequest` (``shape=(64, 64)``, ``fp16=True``, ...);
            or a whole request.
        out_dir (str): Output folder (created; existing files of the same name are replaced).
        log (callable): Progress lines.

    Returns:
        dict: The report also written as ``<name>.<backend>.json``: settings, checks, files, machine.

    Raises:
        ValueError: bad backend / shape / batch / option.
        BackendUnavailable: a package the backend needs is missing (nothing was written).
        ExportError: a check failed (nothing was written).
    """
    if isinstance(backend, ExportRequest):
        if options:
            raise TypeError(f'give an ExportRequest or options, not both (got {sorted(options)})')
        request = backend
    else:
        request = ExportRequest(backend=backend, **options)
    engine = request.engine
    shape = request.shape or default_shape(deployable)
    batch, fp16, name = request.batch, request.fp16, request.stem(deployable, shape)
    x = torch.rand(batch, 3, *shape, generator=torch.Generator().manual_seed(request.seed)) * 2 - 1

    _, form, expected, checks = fuse_and_verify(deployable, x, request.rewrites, log)
    images = request.image_sets(deployable, shape, log)
    stage, created = _stage_dir(out_dir)
    try:
        job = ExportJob(deployable, request, name, x, expected, form, stage, log, extra=images)
        engine.export(job)
        engine.verify(job)
        for checked, result in job.verification.items():
            log(f'{checked}: ' + (f'matches PyTorch (max |diff| {result["max_abs_diff"]:.1e}, relative '
                                  f'{result["rel_error"]:.1e})' if result['verified'] else
                                  f'NOT verified: {result["reason"]}'))
        backend = request.backend
        report = dict(
            mmfastvit=__version__, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            backend=backend, name=name, kind=deployable.kind, source=deployable.source,
            input=dict(name=INPUT_NAME, shape=[batch, 3, *shape], dtype='float16' if fp16 and engine.half_inputs
                       else 'float32', normalized_by_caller=True),
            outputs=list(deployable.output_names), fp16=fp16, precision=request.precision, fusion_level='full',
            checks=checks, export=job.info,
            verification=job.verification, files=dict(job.files), machine=machine_info())
        report_name = f'{name}.{backend}.json'
        with open(osp.join(stage, report_name), 'w') as f:
            json.dump(report, f, indent=2, default=str)
            f.write('\n')
        moved = _commit(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in created:  # folders made only to hold the staging folder
            if osp.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        raise
    report['written'] = moved
    log('wrote ' + ', '.join(moved))
    return report

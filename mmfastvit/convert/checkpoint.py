"""Published FastViT checkpoints (Apple's and timm's) -> mmfastvit's mmpretrain-classifier checkpoints.

The source format and the variant are read from the file, never from its name:

========================  ==========================================  =============================================
format                    recognised by                               output
========================  ==========================================  =============================================
``apple_unfused``         ``patch_embed.`` / ``network.`` + ``rbr_*``  unfused classifier (for training, downstream)
``apple_fused``           the same prefixes + ``reparam_conv``         fused classifier (``model.backbone.deploy=True``)
``timm_unfused``          ``stem.`` / ``stages.`` + ``conv_kxk``       unfused classifier
``timm_fused``            ``stem.`` / ``stages.`` + ``reparam_conv``   fused classifier (``model.backbone.deploy=True``)
``mmfastvit``             ``backbone.`` / ``head.fc.``                 checked and written back as it is
========================  ==========================================  =============================================

Apple's and timm's fused models stop at the ``'reference'`` fusion level (they keep the ConvFFN and attention
BatchNorms and the layer scales); a fused source is loaded at that level and fused on to the ``'full'`` level
that ``deploy=True`` builds, so the output loads into the config with ``--cfg-options model.backbone.deploy=True``.

Every key and shape is checked by loading into the model the variant defines, before anything is written.
"""
import os.path as osp
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import torch
from torch import Tensor

from .. import __version__
from ..fileio import CheckpointError, atomic_save, ema_weights_key, extract_state_dict, load_weights
from ..models.backbones import FastViT
from ..models.classifier import FastViTClassifier
from ..models.utils.reparam import reparameterize_model
from .rename import apple_to_mmfastvit, timm_to_mmfastvit

SOURCE_FORMATS = ('apple_unfused', 'apple_fused', 'timm_unfused', 'timm_fused', 'mmfastvit')
_UNFUSED_MARKERS = ('.rbr_conv.', '.rbr_scale.', '.rbr_skip.', '.lkb_origin.', '.conv_kxk.', '.conv_scale.',
                    '.large_conv.', '.pos_enc.', '.pe.')


@dataclass
class ConversionResult:
    """What :func:`fastvit_to_mmfastvit` found and produced."""
    state_dict: Dict[str, Tensor]
    source_format: str
    arch: str
    num_classes: int
    deploy: bool
    source_tensors: int = 0
    container_key: str = ''
    meta: dict = field(default_factory=dict)
    ema_key: str = ''  # where the file keeps EMA weights, if it has them

    def describe(self) -> str:
        where = f' under "{self.container_key}"' if self.container_key else ''
        form = 'fused (load with model.backbone.deploy=True)' if self.deploy else 'unfused'
        ema = ''
        if self.ema_key and not self.meta.get('ema_choice'):
            ema = f' (the file also has EMA weights under "{self.ema_key}": --ema converts those)'
        return (f'{self.source_format} checkpoint{where}: FastViT-{self.arch.upper()}, {self.num_classes} classes, '
                f'{self.source_tensors} tensors -> mmfastvit classifier, {form}{ema}')


def detect_format(state_dict: Dict[str, Tensor], source: str = 'checkpoint') -> str:
    """One of :data:`SOURCE_FORMATS`, from the key names.

    Raises:
        CheckpointError: the keys are not FastViT's in any known layout, or mix fused and unfused blocks.
    """
    keys = list(state_dict)
    if any(k.startswith('backbone.') for k in keys):
        layout = 'mmfastvit'
    elif any(k.startswith(('patch_embed.', 'network.')) for k in keys):
        layout = 'apple'
    elif any(k.startswith(('stem.', 'stages.')) for k in keys):
        layout = 'timm'
    else:
        raise CheckpointError(
            f'{source} is not a FastViT checkpoint: expected keys starting with "patch_embed." / "network." '
            f'(Apple), "stem." / "stages." (timm) or "backbone." (mmfastvit); found e.g. {keys[:4]}')
    if layout == 'mmfastvit':
        return layout
    fused = any('reparam' in k for k in keys)
    unfused = any(marker in k for k in keys for marker in _UNFUSED_MARKERS)
    if fused and unfused:
        raise CheckpointError(f'{source} mixes fused ("reparam_conv") and unfused (branch) blocks; expected a '
                              f'checkpoint saved wholly before or wholly after reparameterization')
    return f'{layout}_{"fused" if fused else "unfused"}'


def to_mmfastvit_names(state_dict: Dict[str, Tensor], source_format: str,
                       source: str = 'checkpoint') -> Dict[str, Tensor]:
    """Renames a state dict of ``source_format`` to mmfastvit's classifier names (by the rename tables)."""
    if source_format.startswith('apple'):
        renamed = apple_to_mmfastvit(state_dict)
    elif source_format.startswith('timm'):
        renamed = timm_to_mmfastvit(state_dict)
    elif source_format == 'mmfastvit':
        renamed = dict(state_dict)
    else:
        raise ValueError(f'source_format "{source_format}" is not one of {list(SOURCE_FORMATS)}')
    return renamed


def infer_arch(state_dict: Dict[str, Tensor], source: str = 'checkpoint') -> str:
    """The ``FastViT.arch_zoo`` variant whose structure an mmfastvit-named state dict has.

    Raises:
        CheckpointError: the structure (blocks per stage, widths, MLP ratios, mixers, RepCPE) matches no variant.
    """
    prefix = 'backbone.stages.'
    found = dict(layers=[], embed_dims=[], mlp_ratios=[], token_mixers=[], pos_embs=[])
    for i in range(FastViT.num_stages):
        stage = f'{prefix}{i}.'
        fc1 = state_dict.get(f'{stage}blocks.0.mlp.fc1.weight')
        if fc1 is None or fc1.dim() != 4:
            raise CheckpointError(f'{source}: no FastViT stage {i} (expected "{stage}blocks.0.mlp.fc1.weight" '
                                  f'after renaming); it is not a complete FastViT classifier checkpoint')
        blocks = {int(k[len(stage):].split('.')[1]) for k in state_dict if k.startswith(f'{stage}blocks.')}
        found['layers'].append(max(blocks) + 1)
        found['embed_dims'].append(fc1.shape[1])
        found['mlp_ratios'].append(fc1.shape[0] / fc1.shape[1])
        found['token_mixers'].append(
            'attention' if f'{stage}blocks.0.token_mixer.qkv.weight' in state_dict else 'repmixer')
        found['pos_embs'].append(any(k.startswith(f'{stage}pos_emb.') for k in state_dict))
    found = {k: tuple(v) for k, v in found.items()}
    for name in FastViT.arch_zoo:
        settings = FastViT._parse_arch(name)
        if all(tuple(settings[k]) == v for k, v in found.items()):
            return name
    raise CheckpointError(f'{source} has a FastViT structure that is none of the variants '
                          f'{list(FastViT.arch_zoo)}: {found}')


def _check_against_model(state_dict: Dict[str, Tensor], model: torch.nn.Module, what: str) -> None:
    """Refuses missing / unexpected keys and wrong shapes with one message that lists them."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f'{k}: {tuple(state_dict[k].shape)} (expected {tuple(v.shape)})' for k, v in expected.items()
             if k in state_dict and state_dict[k].shape != v.shape]
    problems = []
    for label, items in (('missing', missing), ('unexpected', unexpected), ('wrong shape', wrong)):
        if items:
            problems.append(f'{len(items)} {label}: {items[:4]}{" ..." if len(items) > 4 else ""}')
    if problems:
        raise CheckpointError(f'{what}: ' + '; '.join(problems))


def fastvit_to_mmfastvit(src: str,
                         dst: Optional[str] = None,
                         arch: Optional[str] = None,
                         log: Optional[Callable[[str], None]] = None,
                         ema: Optional[bool] = None) -> ConversionResult:
    """Converts one FastViT checkpoint to mmfastvit's classifier layout and, with ``dst``, writes it.

    Args:
        src (str): Apple ``*.pth.tar`` (unfused or ``_reparam``, weights under ``state_dict`` or a bare dict),
            timm ``.pth`` / ``.safetensors``, or an mmfastvit checkpoint; a bare state dict or a training checkpoint
            (timm's ``CheckpointSaver``, DeiT's, mmengine's). Read with ``weights_only=True``
            (:func:`mmfastvit.fileio.load_weights`).
        dst (str, optional): Output ``.pth``: ``{'state_dict': ..., 'meta': ...}``, written only once the whole
            state dict has loaded into the model of the detected variant, and atomically.
        arch (str, optional): The variant the caller expects; a file of another variant is refused.
        log (callable, optional): Receives one line saying what was found. Defaults to no output.
        ema (bool, optional): ``True`` converts the file's EMA weights, ``False`` the weights before averaging,
            ``None`` the weights the trainer saved as its model's (:func:`mmfastvit.fileio.extract_state_dict`).
            Defaults to None.

    Raises:
        FileNotFoundError, CheckpointError: unreadable file, unknown / missing keys, wrong shapes or variant.
    """
    name = f'"{src}"'
    loaded = load_weights(src)
    state_dict, container_key = extract_state_dict(loaded, src, ema=ema)
    source_format = detect_format(state_dict, name)
    renamed = to_mmfastvit_names(state_dict, source_format, name)
    found_arch = infer_arch(renamed, name)
    if arch is not None and arch.lower() != found_arch:
        raise CheckpointError(f'{name} holds FastViT-{found_arch.upper()} weights, not the requested '
                              f'FastViT-{arch.upper()}')
    head = renamed.get('head.fc.weight')
    if head is None or head.dim() != 2:
        raise CheckpointError(f'{name} has no classifier head ("head.weight" for Apple, "head.fc.weight" for '
                              f'timm); expected a complete ImageNet classifier checkpoint')
    num_classes = head.shape[0]

    fused = not any(marker in k for k in renamed for marker in _UNFUSED_MARKERS)
    # A fused file at the 'reference' level (Apple's, timm's) still has the ConvFFN BatchNorm; the 'full' one has not.
    level = ('reference' if any('.mlp.conv.bn.' in k for k in renamed) else 'full') if fused else False
    model = FastViTClassifier(found_arch, num_classes=num_classes, deploy=level)
    _check_against_model(renamed, model, f'{name} ({source_format}, FastViT-{found_arch.upper()})')
    model.load_state_dict(renamed, strict=True)
    if fused:
        reparameterize_model(model, 'full')
    out = {k: v.detach().clone() for k, v in model.state_dict().items()}

    meta = dict(mmfastvit_version=__version__, source=osp.basename(src), source_format=source_format,
                arch=found_arch, num_classes=num_classes, deploy=bool(fused))
    if container_key:
        meta['source_key'] = container_key
    if ema is not None:
        meta['ema_choice'] = 'ema' if ema else 'raw'
    result = ConversionResult(out, source_format, found_arch, num_classes, bool(fused), len(state_dict),
                              container_key, meta, ema_weights_key(loaded))
    if log is not None:
        log(f'{src}: {result.describe()}')
    if dst is not None:
        if osp.abspath(dst) == osp.abspath(src):
            raise CheckpointError(f'output "{dst}" is the source file; choose another path')
        atomic_save(dict(state_dict=out, meta=meta), dst)
        if log is not None:
            log(f'wrote {dst}')
    return result

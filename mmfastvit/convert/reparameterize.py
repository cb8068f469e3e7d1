"""A trained checkpoint -> its fused (deploy) checkpoint, for the config it was trained with.

The model is built from the config, loaded, checked to be unfused, fused in place to the deepest level
(``reparameterize_model(model, 'full')``) and verified twice before anything is written: the fused model's outputs
against the unfused one's, and the written state dict against a model built from the same config with
``model.backbone.deploy=True`` (mmpretrain's convention), which must load it strictly and give the same outputs.

Imports torch and mmengine only; the config's task package (mmpretrain, mmdet, mmseg) is imported through its
``default_scope`` and ``custom_imports`` as mmengine's Runner would.
"""
import copy
import os.path as osp
from typing import Callable, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint
from mmengine.utils import import_modules_from_strings

from .. import __version__
from ..engine.checkpoint import mmengine_checkpoint_globals
from ..fileio import CheckpointError, atomic_save
from ..models.utils.reparam import fused_level, reparameterize_model
from ..models.utils.fusion_checks import relative_error

# Fused and unfused outputs differ by float32 rounding only (observed 1e-6 relative); a wrong fusion is off by O(1).
FUSION_TOLERANCE = 1e-4


def build_model_from_config(cfg: Config, deploy: bool = False) -> torch.nn.Module:
    """The config's ``model``, built in its default scope, optionally with ``model.backbone.deploy=True``."""
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model_cfg = copy.deepcopy(cfg.model)
    if deploy:
        if 'backbone' not in model_cfg:
            raise ValueError('the config\'s model has no "backbone" to build with deploy=True')
        model_cfg.backbone.deploy = True
        model_cfg.backbone.pop('init_cfg', None)  # the deploy checkpoint supplies every weight
    return MODELS.build(model_cfg).eval()


def _features(model: torch.nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """What the task model computes from the image tensor without annotations: backbone (+ neck) features."""
    with torch.no_grad():
        feats = model.extract_feat(x) if hasattr(model, 'extract_feat') else model(x)
    return tuple(feats) if isinstance(feats, (tuple, list)) else (feats,)


def reparameterize_checkpoint(config: str,
                              checkpoint: str,
                              out: str,
                              shape: Sequence[int] = (256, 256),
                              cfg_options: Optional[dict] = None,
                              log: Optional[Callable[[str], None]] = None) -> dict:
    """Writes ``out``, the fused form of ``checkpoint`` (a checkpoint of ``config``'s model).

    Args:
        config (str): The training config.
        checkpoint (str): A checkpoint of that model, e.g. the work dir's ``epoch_300.pth`` (mmengine's Runner
            format, read with ``weights_only=True`` and the allowlist of :mod:`mmfastvit.engine.checkpoint`) or a
            converted published checkpoint.
        out (str): The fused checkpoint (``state_dict`` + ``meta``), written atomically.
        shape (Sequence[int]): ``(H, W)`` of the random batch the verification runs. Defaults to 256x256.
        cfg_options (dict, optional): Overrides merged into the config.
        log (callable, optional): Progress lines.

    Returns:
        dict: ``relative_error`` of the fused outputs and of the config-built deploy model's, the keys written.

    Raises:
        FileNotFoundError, CheckpointError: unreadable / already fused checkpoint, or a fusion that changes outputs.
    """
    log = log or (lambda msg: None)
    for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} "{path}" does not exist')
    if osp.abspath(out) == osp.abspath(checkpoint):
        raise CheckpointError(f'output "{out}" is the input checkpoint; choose another path')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'backbone' in cfg.model and cfg.model.backbone.get('deploy'):
        raise CheckpointError(f'config "{config}" already builds the fused model (model.backbone.deploy is set); '
                              f'give the training config')
    model = build_model_from_config(cfg)
    if 'backbone' in cfg.model:
        cfg.model.backbone.pop('init_cfg', None)
    with mmengine_checkpoint_globals():
        try:
            load_checkpoint(model, checkpoint, map_location='cpu', strict=True, logger='silent')
        except RuntimeError as err:
            hint = ' (is it already fused? then it needs no reparameterization)' if 'reparam' in str(err) else ''
            raise CheckpointError(f'checkpoint "{checkpoint}" does not fit the model of "{config}"{hint}: '
                                  f'{str(err).splitlines()[0]} ...') from err
    model.eval()
    log(f'loaded {checkpoint} into {type(model).__name__}; fusion level: {fused_level(model.backbone)}')

    x = torch.rand(2, 3, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = _features(model, x)
    reparameterize_model(model, 'full')
    fused_error = relative_error(_features(model, x), expected)
    state_dict = {k: v.detach().clone() for k, v in model.state_dict().items()}

    deploy_model = build_model_from_config(cfg, deploy=True)
    missing, unexpected = [k for k in deploy_model.state_dict() if k not in state_dict], \
        [k for k in state_dict if k not in deploy_model.state_dict()]
    if missing or unexpected:
        raise CheckpointError(f'the fused state dict does not fit the config built with model.backbone.deploy=True '
                              f'(missing {missing[:4]}, unexpected {unexpected[:4]}); nothing was written')
    deploy_model.load_state_dict(state_dict, strict=True)
    deploy_error = relative_error(_features(deploy_model, x), expected)
    log(f'fused vs unfused outputs: relative error {fused_error:.2e}; '
        f'config with model.backbone.deploy=True: {deploy_error:.2e}')
    if max(fused_error, deploy_error) > FUSION_TOLERANCE:
        raise CheckpointError(f'fusing "{checkpoint}" changed the outputs (relative error '
                              f'{max(fused_error, deploy_error):.2e} > {FUSION_TOLERANCE}); nothing was written')

    meta = dict(mmfastvit_version=__version__, config=osp.basename(config), source=osp.basename(checkpoint),
                deploy=True, fusion_level='full')
    atomic_save(dict(state_dict=state_dict, meta=meta), out)
    log(f'wrote {out}: test it with --cfg-options model.backbone.deploy=True')
    return dict(fused_error=fused_error, deploy_error=deploy_error, keys=len(state_dict))

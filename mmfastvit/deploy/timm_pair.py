"""Our classifier beside timm's reparameterized model with the same weights, for the benchmark's ours / timm ratios
(timm is imported when used)."""
import importlib
from typing import Tuple

import torch
from torch import nn

from ..models.utils.fusion_checks import randomize_fusable_state_
from .backbones import families, parse_variant
from .loading import Deployable, as_deployable
from .runtimes import BackendUnavailable, probe


def timm_fused_pair(variant: str, seed: int = 0) -> Tuple[Deployable, nn.Module]:
    """Our classifier and timm's reparameterized model of ``variant`` (its backbone's ``timm_model``, e.g.
    ``fastvit_t8``), both with the same (timm's, randomized) weights.

    Raises:
        ValueError: timm has no model of this variant's family (FMViT).
        BackendUnavailable: timm is not installed.
    """
    family, arch = parse_variant(variant)
    facts = families()[family]
    if not facts.timm_model:
        raise ValueError(f'timm has no {facts.display_name}: variant "{variant}" cannot be compared with timm')
    ok, detail = probe('timm')
    if not ok:
        raise BackendUnavailable(f'comparing with timm needs the `timm` package ({detail}); '
                                 f'pip install timm==1.0.31 (requirements/tests.txt)')
    import timm
    from timm.utils import reparameterize_model as timm_reparameterize

    module, _, function = facts.timm_converter.rpartition('.')
    to_ours = getattr(importlib.import_module(module), function)
    timm_name = facts.timm_model.format(arch=arch)
    torch.manual_seed(seed)
    timm_model = randomize_fusable_state_(timm.create_model(timm_name), seed).eval()
    ours = facts.classifier(arch)
    ours.load_state_dict(to_ours(timm_model.state_dict()))
    source = dict(variant=variant, seed=seed, weights=f'timm {timm_name}, randomized')
    deployable = as_deployable(ours.eval(), f'{family}_{arch}', source)
    return deployable, timm_reparameterize(timm_model).eval()

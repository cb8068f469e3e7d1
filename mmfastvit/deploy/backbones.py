"""The backbones the deploy tools take and what they need to know about each (torch and mmengine only).

A backbone class registered in mmfastvit's model registry (``mmfastvit.registry.MODELS``) that declares a
``deploy_facts`` dict of its own is deployable; nothing here names one. The dict's keys are the fields of
:class:`BackboneFacts` other than ``backbone``; the class also sets ``classifier_out_indices`` (the output its image
classifier pools) and has a :class:`~mmfastvit.models.classifier.PooledLinearClassifier` subclass for
:func:`~mmfastvit.deploy.loading.from_variant` to build.

Variant names: the arch with the family in front (``'fmvit_t'``); for the one family declared ``prefix_optional``
(FastViT), the arch alone as well (``'t8'``, the name the tools list).
"""
from dataclasses import dataclass, field, fields
from typing import Dict, List, Mapping, Optional, Tuple

from torch import nn

from ..models.classifier import classifier_for
from ..registry import MODELS


@dataclass(frozen=True)
class BackboneFacts:
    """What the deploy tools need to know about one backbone class.

    Attributes:
        backbone (type): The backbone class.
        family (str): Its name in variant names, reports and file names, e.g. ``'fmvit'``.
        classifier_input_size (int): The side its classifiers are exported and timed at by default (each paper's
            resolution); dense backbones use the protocol's 512x512.
        prefix_optional (bool): Its variants may be named by the arch alone (one family at most).
        variant_group (str, optional): A name that stands for all its variants in ``--variants``.
        output_names (dict): Names of outputs other than ``stage<i>``, by ``out_indices`` entry.
        rewrites (tuple[str]): The export rewrites (:mod:`mmfastvit.deploy.export_form`) that apply to it.
        pooled_block (str, optional): The block whose output its classifier pools, when the ``grouped_conv`` rewrite
            may split it (the classifier's linear layer then absorbs the channel order).
        calibrate_batchnorm (bool): Built from a variant with random statistics, its BatchNorms need the statistics of
            a random batch (:func:`~mmfastvit.deploy.loading.calibrate_batchnorm_`).
        timm_model (str, optional): timm's name of the same network, ``{arch}`` filled in; None: timm has none.
        timm_converter (str, optional): ``module.function`` that renames timm's state dict to ours.
        model_name (str, optional): The model-index name (``mmfastvit.list_models()``) of its ImageNet-1k
            classifier, ``{arch}`` filled in: the accuracy-vs-latency figure plots that entry's published top-1.
        top1_source (str): Where those figures come from, in the figure's title.
    """

    backbone: type
    family: str
    classifier_input_size: int
    prefix_optional: bool = False
    variant_group: Optional[str] = None
    output_names: Mapping[int, str] = field(default_factory=dict)
    rewrites: Tuple[str, ...] = ()
    pooled_block: Optional[str] = None
    calibrate_batchnorm: bool = False
    timm_model: Optional[str] = None
    timm_converter: Optional[str] = None
    model_name: Optional[str] = None
    top1_source: str = ''

    @property
    def display_name(self) -> str:
        """``'FastViT'``, ``'FMViT'``: the backbone's own name for itself."""
        return self.backbone.display_name

    @property
    def classifier(self) -> type:
        """Its image classifier class."""
        return classifier_for(self.backbone)

    def variant(self, arch: str) -> str:
        """The name the tools list for ``arch``: ``'t8'``, ``'fmvit_t'``."""
        return arch if self.prefix_optional else f'{self.family}_{arch}'

    def output_name(self, index: int) -> str:
        """The exported name of output ``index``: ``'stage<i>'`` unless declared otherwise."""
        return self.output_names.get(index, f'stage{index}')


def registered() -> List[BackboneFacts]:
    """The deployable backbones, in registration order (FastViT, FMViT).

    Raises:
        TypeError: a class's ``deploy_facts`` has a key :class:`BackboneFacts` does not know.
        ValueError: two classes declare the same family, or more than one declares ``prefix_optional``.
    """
    known = {f.name for f in fields(BackboneFacts)} - {'backbone'}
    facts = []
    for cls in MODELS.module_dict.values():
        declared = vars(cls).get('deploy_facts') if isinstance(cls, type) else None
        if declared is None:
            continue
        unknown = set(declared) - known
        if unknown:
            raise TypeError(f'{cls.__name__}.deploy_facts has unknown keys {sorted(unknown)}; the keys are '
                            f'{sorted(known)}')
        facts.append(BackboneFacts(backbone=cls, **declared))
    names = [f.family for f in facts]
    if len(set(names)) != len(names) or sum(f.prefix_optional for f in facts) > 1:
        raise ValueError(f'deployable backbones need distinct families and at most one prefix_optional: '
                         f'{[(f.backbone.__name__, f.family, f.prefix_optional) for f in facts]}')
    return facts


def families() -> Dict[str, BackboneFacts]:
    """``{family: facts}`` of the deployable backbones."""
    return {f.family: f for f in registered()}


def default_family() -> BackboneFacts:
    """The family whose variants may be named without a prefix (FastViT), else the first registered."""
    facts = registered()
    return next((f for f in facts if f.prefix_optional), facts[0])


def facts_of(backbone: nn.Module) -> BackboneFacts:
    """The facts of a backbone instance: its class's, or its nearest deployable base class's.

    Raises:
        TypeError: it is not a deployable backbone.
    """
    by_class = {facts.backbone: facts for facts in registered()}
    for cls in type(backbone).__mro__:
        if cls in by_class:
            return by_class[cls]
    raise TypeError(f'{type(backbone).__name__} is not {names("or", article=True)}')


def is_deployable_backbone(obj: object) -> bool:
    """Whether ``obj`` is an instance of a deployable backbone class."""
    return isinstance(obj, tuple(f.backbone for f in registered()))


def _article(name: str) -> str:
    # an acronym read letter by letter ("an FMViT") vs a word ("a FastViT")
    vowel_sound = name[0] in 'AEFHILMNORSX' if name[:2].isupper() else name[0].lower() in 'aeiou'
    return 'an' if vowel_sound else 'a'


def names(joiner: str = 'or', article: bool = False) -> str:
    """The deployable backbones' names for messages: ``'FastViT or FMViT'``, ``'a FastViT or an FMViT'``,
    ``'FastViT / FMViT'`` (``joiner='/'``)."""
    words = [f'{_article(f.display_name)} {f.display_name}' if article else f.display_name for f in registered()]
    if joiner == '/':
        return ' / '.join(words)
    return ', '.join(words[:-1]) + f' {joiner} ' + words[-1] if len(words) > 1 else words[0]


def variant_names(family: Optional[str] = None) -> List[str]:
    """The variant names the tools take: ``t8`` ... ``ma36`` (FastViT), ``fmvit_t`` ... ``fmvit_l`` (FMViT)."""
    return [facts.variant(arch) for facts in registered() if family in (None, facts.family)
            for arch in facts.backbone.arch_zoo]


def variant_groups() -> Dict[str, str]:
    """``{group name: family}``: ``'all'`` stands for FastViT's variants, ``'fmvit'`` for FMViT's."""
    return {f.variant_group: f.family for f in registered() if f.variant_group}


def parse_variant(name: str) -> Tuple[str, str]:
    """``(family, arch)`` of a variant name: ``'sa12'`` / ``'fastvit_sa12'`` -> ``('fastvit', 'sa12')``,
    ``'fmvit_t'`` -> ``('fmvit', 't')``.

    Raises:
        ValueError: naming the bad value and the valid ones.
    """
    lowered = str(name).lower()
    family, _, arch = lowered.partition('_')
    known = families()
    if family not in known or not arch:
        family, arch = default_family().family, lowered
    if arch not in known[family].backbone.arch_zoo:
        raise ValueError(f'variant "{name}" is not one of {variant_names()}')
    return family, arch


def canonical_variant(name: str) -> str:
    """The name :func:`variant_names` lists for ``name`` (``'fastvit_T8'`` -> ``'t8'``)."""
    family, arch = parse_variant(name)
    return families()[family].variant(arch)

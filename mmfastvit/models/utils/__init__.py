from .multigroup import ConvBranch, MultiGroupConv, embed_grouped_kernel, fuse_multigroup, identity_branch
from .reparam import Reparameterizable, ReparameterizeMixin, deploy_level, fused_level, reparameterize_model

__all__ = ['Reparameterizable', 'ReparameterizeMixin', 'deploy_level', 'fused_level', 'reparameterize_model']

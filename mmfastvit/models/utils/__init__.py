from .multigroup import ConvBranch, embed_grouped_kernel, fuse_multigroup, identity_branch, multigroup_branches
from .reparam import Reparameterizable, ReparameterizeMixin, deploy_level, fused_level, reparameterize_model

__all__ = ['ConvBranch', 'embed_grouped_kernel', 'fuse_multigroup', 'identity_branch', 'multigroup_branches',
           'Reparameterizable', 'ReparameterizeMixin', 'deploy_level', 'fused_level', 'reparameterize_model']

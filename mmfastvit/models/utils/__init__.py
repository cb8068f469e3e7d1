from .reparam import Reparameterizable, ReparameterizeMixin, deploy_level, fused_level, reparameterize_model

__all__ = ['Reparameterizable', 'ReparameterizeMixin', 'deploy_level', 'fused_level', 'reparameterize_model']

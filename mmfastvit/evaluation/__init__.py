"""Evaluation metrics (mmengine only; each submodule registers its metrics in mmfastvit's ``METRICS`` when imported).

``robustness``: top-1 over a class subset (ImageNet-A / -R) and ImageNet-C's mean corruption error. A config reaches
them in the mmpretrain scope through ``custom_imports=dict(imports=['mmfastvit.integrations.mmpretrain'])``.
"""

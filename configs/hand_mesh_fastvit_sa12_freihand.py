# The same hand mesh model and recipe with FastViT-SA12, for quicker runs (no paper figure).
_base_ = [
    './_base_/models/hand_mesh_fastvit.py',
    './_base_/datasets/freihand_224.py',
    './_base_/schedules/hand_adam_200e.py',
    './_base_/hand_runtime.py',
]

model = dict(
    backbone=dict(
        arch='sa12',
        init_cfg=dict(checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
                                 'image_classification_models/fastvit_sa12.pth.tar')))

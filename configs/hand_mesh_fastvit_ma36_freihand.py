# The FastViT paper's 3D hand mesh model on FreiHAND: FastViT-MA36 + MANO regression head, 224x224, Adam lr 1e-4,
# x0.1 after 100 of 200 epochs, 8 GPUs x 32. Paper (Table 8): PA-MPJPE 6.6 mm, PA-MPVPE 6.7 mm, F@5 0.722,
# F@15 0.981, 218 FPS on an RTX-2080Ti.
# The backbone starts from Apple's ImageNet-1k release, downloaded and converted on first use (docs/hand_mesh.md);
# to train from scratch:
#   --cfg-options model.backbone.init_cfg=None
_base_ = [
    './_base_/models/hand_mesh_fastvit.py',
    './_base_/datasets/freihand_224.py',
    './_base_/schedules/hand_adam_200e.py',
    './_base_/hand_runtime.py',
]

model = dict(
    backbone=dict(
        arch='ma36',
        init_cfg=dict(checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
                                 'image_classification_models/fastvit_ma36.pth.tar')))

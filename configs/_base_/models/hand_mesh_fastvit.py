# The paper's hand-mesh model (FastViT App. B.5): an ImageNet-pretrained FastViT, its pooled final_conv features
# (out_indices=(4,), 2x the last stage's width, as in the classifier), and single fully connected layers that regress a
# weak-perspective camera (s, tx, ty), 16 MANO joint rotations in 6D and 10 shape coefficients. Losses on vertices,
# 3D joints and the projected 2D joints, each with weight 1.0 (L1, root-relative; mmfastvit/hand/head.py).
# MANO_RIGHT.pkl is licence-gated (https://mano.is.tue.mpg.de): put it at data/mano/MANO_RIGHT.pkl or set both
# model.head.mano_path and the pipelines' HandPoseFromMANO mano_path (docs/hand_mesh.md).
model = dict(
    type='mmfastvit.HandMeshEstimator',
    data_preprocessor=dict(
        type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=False),
    backbone=dict(
        type='mmfastvit.FastViT',
        arch='ma36',
        out_indices=(4, ),
        drop_path_rate=0.0,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
                       'image_classification_models/fastvit_ma36.pth.tar',
            prefix='backbone.')),
    head=dict(type='mmfastvit.MANORegressionHead', mano_path='data/mano/MANO_RIGHT.pkl',
              loss_weights=dict(vertices=1.0, joints=1.0, joints_2d=1.0), loss_type='l1'))

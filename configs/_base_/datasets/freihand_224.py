# FreiHAND as released (training/rgb with its 4 versions per id, the training_*.json lists, evaluation/rgb and the
# evaluation_*.json lists incl. the later-released evaluation_{xyz,verts,mano}.json), with METRO's crop and
# augmentation: a 180 px box at the image centre resized to 224; in training a rotation N(0, 90 deg) clipped to +-180
# and zeroed with probability 0.6, a scale N(1, 0.25) clipped to [0.75, 1.25], per-channel pixel noise U[0.6, 1.4],
# no flip. Validation and test score the evaluation split with FreiHAND's official metrics (PA-MPJPE, PA-MPVPE, AUC,
# F@5 mm, F@15 mm); for the evaluation server's pred.json see docs/hand_mesh.md.
data_root = 'data/freihand/'

train_pipeline = [
    dict(type='mmfastvit.LoadImageFromFile', on_corrupt='error'),  # 'skip': warn and train on another image
    dict(type='mmfastvit.HandPoseFromMANO', mano_path='data/mano/MANO_RIGHT.pkl'),
    dict(type='mmfastvit.HandCropAffine', center=(112, 112), box_size=180, out_size=224, augment=True),
    dict(type='mmfastvit.HandColorNoise', factor_range=(0.6, 1.4)),
    dict(type='mmfastvit.PackHandInputs'),
]
test_pipeline = [
    dict(type='mmfastvit.LoadImageFromFile'),
    dict(type='mmfastvit.HandPoseFromMANO', mano_path='data/mano/MANO_RIGHT.pkl'),
    dict(type='mmfastvit.HandCropAffine', center=(112, 112), box_size=180, out_size=224, augment=False),
    dict(type='mmfastvit.PackHandInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='mmfastvit.FreiHANDDataset', data_root=data_root, split='training', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='mmfastvit.FreiHANDDataset',
        data_root=data_root,
        split='evaluation',
        with_annotations=True,
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='mmfastvit.FreiHANDMetric')
test_evaluator = val_evaluator

# What the four robustness benchmark configs (imagenet_{c,a,r,sketch}.py) share: mmfastvit's datasets and metrics in
# mmpretrain's registries, and a test loader in evaluation order. Each benchmark config sets the dataset and metric.
custom_imports = dict(imports=['mmfastvit.integrations.mmpretrain'], allow_failed_imports=False)

test_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(wnids_file=None, test_mode=True),
)

# ImageNet-R (Hendrycks et al., ICCV 2021) for tools/analysis_tools/robustness.py: 30,000 renditions of 200 ImageNet
# classes, top-1 with the model's 1000 scores read over those 200 classes only. Layout: data/imagenet-r/<wnid>/*.jpg.
# Labels are ImageNet-1k indices, from the sorted list of the 1000 wnids: wnids_file, or timm's copy when timm is
# installed (docs/robustness.md).
_base_ = ['./robustness_loader.py']

test_dataloader = dict(dataset=dict(type='ImageNetR', data_root='data/imagenet-r/'))
test_evaluator = dict(type='SubsetAccuracy', prefix='imagenet_r')

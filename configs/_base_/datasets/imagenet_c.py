# ImageNet-C (Hendrycks & Dietterich, ICLR 2019) for tools/analysis_tools/robustness.py: the 15 corruptions x 5
# severities of the 50,000 validation images, one dataset, scored as the mean corruption error (mCE, AlexNet-normalized,
# lower is better) and the unnormalized mean top-1 error. Layout: data/imagenet-c/<corruption>/<severity>/<wnid>/*.JPEG
# (or grouped, noise/gaussian_noise/...; docs/robustness.md). The tool adds the model config's test pipeline: the images
# are 224x224 already and are resized and centre-cropped to the model's eval size, as RVT's evaluation does.
_base_ = ['./robustness_loader.py']

test_dataloader = dict(
    dataset=dict(
        type='ImageNetC',
        data_root='data/imagenet-c/',
        # corruptions=[...], severities=[...]: a subset (then the metric needs allow_partial=True); wnids_file is not
        # needed: the folders hold all 1000 classes
    ))
test_evaluator = dict(type='CorruptionError', allow_partial=False)

# ImageNet-Sketch (Wang et al., NeurIPS 2019) for tools/analysis_tools/robustness.py: about 50,000 sketches, ~50 of each
# of the 1000 classes, top-1 over all 1000. Layout: data/imagenet-sketch/sketch/<wnid>/*.JPEG (docs/robustness.md).
_base_ = ['./robustness_loader.py']

test_dataloader = dict(dataset=dict(type='ImageNetSketch', data_root='data/imagenet-sketch/'))
test_evaluator = dict(type='Accuracy', topk=(1, 5), prefix='imagenet_sketch')

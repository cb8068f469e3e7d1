"""The tiny generated ImageNet: layout, determinism, and mmpretrain's own ImageNet dataset and pipeline reading it."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from mmfastvit.datasets import make_tiny_imagenet
from mmfastvit.datasets.synthetic.imagenet import SHAPES, render_image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _digest(root):
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny_imagenet')
    return make_tiny_imagenet(str(root), num_classes=3, train_per_class=4, val_per_class=2, size=48, seed=1)


def test_layout_and_summary(tiny):
    root = tiny['root']
    assert tiny['num_classes'] == 3 and tiny['classes'] == ['n00000000', 'n00000001', 'n00000002']
    assert tiny['train'] == dict(ann_file='meta/train.txt', data_prefix='train', num_images=12)
    assert tiny['val'] == dict(ann_file='meta/val.txt', data_prefix='val', num_images=6)
    train_lines = open(os.path.join(root, 'meta/train.txt')).read().splitlines()
    assert train_lines[0] == 'n00000000/n00000000_00000.JPEG 0' and len(train_lines) == 12
    for line in train_lines:
        path, label = line.split()
        assert path.startswith(f'n{int(label):08d}/') and os.path.isfile(os.path.join(root, 'train', path))
    val_lines = open(os.path.join(root, 'meta/val.txt')).read().splitlines()
    assert [int(line.split()[1]) for line in val_lines] == [0, 1, 2, 0, 1, 2]
    assert all(os.path.isfile(os.path.join(root, 'val', line.split()[0])) for line in val_lines)


def test_deterministic_by_seed(tmp_path):
    kwargs = dict(num_classes=2, train_per_class=2, val_per_class=1, size=32)
    make_tiny_imagenet(str(tmp_path / 'a'), seed=3, **kwargs)
    make_tiny_imagenet(str(tmp_path / 'b'), seed=3, **kwargs)
    make_tiny_imagenet(str(tmp_path / 'c'), seed=4, **kwargs)
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b') != _digest(tmp_path / 'c')


def test_classes_differ_and_images_vary():
    """Same class: different images; the per-class mean colours are far apart."""
    images = {label: [render_image(label, 64, np.random.default_rng([0, label, i])) for i in range(8)]
              for label in range(len(SHAPES))}
    assert not np.array_equal(images[0][0], images[0][1])
    means = np.stack([np.mean([image.reshape(-1, 3).max(0) for image in images[label]], axis=0) for label in images])
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert distances[~np.eye(len(means), dtype=bool)].min() > 20


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_classes=0), 'num_classes must be a positive int, got 0'),
    (dict(num_classes=1001), 'at most 1000'),
    (dict(size=8), 'size must be at least 16'),
    (dict(train_per_class=1.5), 'train_per_class must be a positive int'),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_tiny_imagenet(str(tmp_path / 'out'), **kwargs)
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('split', ['train', 'val'])
def test_mmpretrain_imagenet_reads_it(tiny, split):
    pytest.importorskip('mmpretrain')
    from mmpretrain.datasets import ImageNet
    from mmpretrain.registry import TRANSFORMS
    from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=True)  # builds in mmpretrain's scope whatever ran before

    info = tiny[split]
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=32) if split == 'train' else dict(type='CenterCrop', crop_size=32),
        dict(type='PackInputs'),
    ]
    dataset = ImageNet(data_root=tiny['root'], ann_file=info['ann_file'], data_prefix=info['data_prefix'],
                       pipeline=[TRANSFORMS.build(t) for t in pipeline])
    assert len(dataset) == info['num_images']
    assert sorted(set(dataset.get_gt_labels().tolist())) == [0, 1, 2]
    for index in range(len(dataset)):
        sample = dataset[index]
        assert tuple(sample['inputs'].shape) == (3, 32, 32)
        assert sample['data_samples'].gt_label.item() == dataset.get_data_info(index)['gt_label']
    # split= finds the same files through meta/<split>.txt
    assert len(ImageNet(data_root=tiny['root'], split=split)) == info['num_images']


def test_cli_and_light_import(tmp_path):
    script = os.path.join(REPO, 'tools', 'dataset_converters', 'make_tiny_dataset.py')
    out = tmp_path / 'cli'
    result = subprocess.run([sys.executable, script, 'imagenet', str(out), '--classes', '2', '--train-per-class', '1',
                             '--val-per-class', '1', '--size', '32', '--seed', '5'], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '"num_images": 2' in result.stdout and (out / 'meta' / 'val.txt').is_file()

    bad = subprocess.run([sys.executable, script, 'imagenet', str(tmp_path / 'bad'), '--classes', '0'],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and 'num_classes must be a positive int' in bad.stderr
    assert not (tmp_path / 'bad').exists()

    # mmfastvit.datasets stays free of the task packages.
    check = ('import sys, mmfastvit.datasets; '
             'print([m for m in ("mmpretrain", "mmdet", "mmseg") if m in sys.modules])')
    result = subprocess.run([sys.executable, '-c', check], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == '[]', result.stderr

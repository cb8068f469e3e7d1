"""The tiny generated ADE20K: layout, known label maps, determinism, bad input, and mmseg's own ADE20KDataset and
loading pipeline reading it with the labels reduce_zero_label gives."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mmfastvit.datasets import make_tiny_ade20k
from mmfastvit.datasets.synthetic.ade20k import render_sample

from helpers import run_in_process

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = (40, 56)  # (H, W), not square: the dataset must keep the orientation
CLASSES = (7, 21, 150)  # road, car, flag: the top of ADE20K's range included
BACKGROUND = 3  # sky
SPLITS = (('training', 'ADE_train', 4), ('validation', 'ADE_val', 3))


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
    root = tmp_path_factory.mktemp('tiny_ade20k')
    return make_tiny_ade20k(str(root), num_train=4, num_val=3, size=SIZE, classes=CLASSES, background=BACKGROUND,
                            seed=1)


def _annotation(tiny, split, index):
    prefix = dict((s, p) for s, p, _ in SPLITS)[split]
    return np.asarray(Image.open(os.path.join(tiny['root'], 'annotations', split, f'{prefix}_{index + 1:08d}.png')))


def test_layout_and_summary(tiny):
    root = tiny['root']
    assert tiny['size'] == list(SIZE)
    assert tiny['labels'] == [BACKGROUND, *CLASSES] and tiny['reduced_labels'] == [2, 6, 20, 149]
    for split, prefix, count in SPLITS:
        assert tiny[split] == dict(img_dir=f'images/{split}', ann_dir=f'annotations/{split}', num_images=count)
        stems = [f'{prefix}_{i:08d}' for i in range(1, count + 1)]  # ADE20K numbers its files from 1
        assert sorted(os.listdir(os.path.join(root, 'images', split))) == [s + '.jpg' for s in stems]
        assert sorted(os.listdir(os.path.join(root, 'annotations', split))) == [s + '.png' for s in stems]
        for stem in stems:
            image = Image.open(os.path.join(root, 'images', split, stem + '.jpg'))
            label = Image.open(os.path.join(root, 'annotations', split, stem + '.png'))
            assert image.format == 'JPEG' and image.mode == 'RGB' and image.size == SIZE[::-1]
            assert label.format == 'PNG' and label.mode == 'L' and label.size == SIZE[::-1]


def test_label_maps_are_the_drawn_geometry(tiny):
    """Each stored map is exactly what render_sample draws for that file's seed; every class occurs in training."""
    seen = set()
    for split_id, (split, _, count) in enumerate(SPLITS):
        for index in range(count):
            rng = np.random.default_rng([1, split_id, index])
            image, label = render_sample(*SIZE, CLASSES, BACKGROUND, 3, rng, first_class=index % len(CLASSES))
            stored = _annotation(tiny, split, index)
            np.testing.assert_array_equal(stored, label)
            assert set(np.unique(stored)) <= {0, BACKGROUND, *CLASSES}
            assert (stored == 0).any() and (stored == BACKGROUND).any()  # the unlabelled patch, the background
            assert (stored == CLASSES[index % len(CLASSES)]).any()  # the first object's class
            if split == 'training':
                seen.update(np.unique(stored).tolist())
            # the image follows the labels: objects are bright, the background is dim
            value = np.asarray(Image.fromarray(image).convert('HSV'), dtype=float)[..., 2]
            assert value[label == CLASSES[index % len(CLASSES)]].mean() > 150 > value[label == BACKGROUND].mean()
    assert seen == {0, BACKGROUND, *CLASSES}


def test_deterministic_by_seed(tmp_path):
    kwargs = dict(num_train=2, num_val=1, size=32)
    make_tiny_ade20k(str(tmp_path / 'a'), seed=3, **kwargs)
    make_tiny_ade20k(str(tmp_path / 'b'), seed=3, **kwargs)
    make_tiny_ade20k(str(tmp_path / 'c'), seed=4, **kwargs)
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b') != _digest(tmp_path / 'c')


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_train=0), 'num_train must be a positive int, got 0'),
    (dict(num_val=2.5), 'num_val must be a positive int, got 2.5'),
    (dict(max_objects=0), 'max_objects must be a positive int'),
    (dict(size=16), r'size must be an int or \(height, width\) of ints >= 32, got 16'),
    (dict(size=(64, 64, 3)), r'size must be .* got \(64, 64, 3\)'),
    (dict(classes=(2, 0)), r'classes \[2, 0\]: \[0\] not ADE20K class ids in 1..150'),
    (dict(classes=(151,)), r'\[151\] not ADE20K class ids in 1..150'),
    (dict(classes=()), 'classes must be a non-empty sequence'),
    (dict(classes=(2, 2)), r'classes \[2, 2\] repeats a class id'),
    (dict(background=0), 'background must be an ADE20K class id in 1..150, got 0'),
    (dict(background=2), r'background class 2 is also in classes \[2, 3, 4, 5\]'),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_tiny_ade20k(str(tmp_path / 'out'), **kwargs)
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('split', ['training', 'validation'])
def test_mmseg_ade20k_dataset_reads_it(tiny, split):
    """mmseg's ADE20KDataset as the segmentation configs set it up, with their annotation loading: stored k becomes
    class index k - 1 and stored 0 (other) the ignore value 255."""
    pytest.importorskip('mmseg')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)

    cfg = Config.fromfile(os.path.join(REPO, 'configs', '_base_', 'datasets', 'ade20k_512.py'))
    dataloader = cfg.train_dataloader if split == 'training' else cfg.val_dataloader
    assert dataloader.dataset.data_prefix == dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}')
    load_annotations = [t for t in cfg.test_pipeline if t['type'] == 'LoadAnnotations']
    assert len(load_annotations) == 1
    pipeline = [dict(type='LoadImageFromFile'), *load_annotations, dict(type='PackSegInputs')]
    with DefaultScope.overwrite_default_scope('mmseg'):  # the pipeline's transforms are mmseg's
        dataset = DATASETS.build(dict(dataloader.dataset, data_root=tiny['root'], pipeline=pipeline))
    assert type(dataset).__name__ == 'ADE20KDataset'
    assert len(dataset) == tiny[split]['num_images']
    assert len(dataset.metainfo['classes']) == 150
    assert [dataset.metainfo['classes'][c] for c in tiny['reduced_labels']] == ['sky', 'road', 'car', 'flag']
    for index in range(len(dataset)):
        sample = dataset[index]
        assert tuple(sample['inputs'].shape) == (3, *SIZE)
        gt = sample['data_samples'].gt_sem_seg.data.squeeze(0).numpy()
        stored = _annotation(tiny, split, index)
        expected = np.where(stored == 0, 255, stored.astype(np.int64) - 1)
        np.testing.assert_array_equal(gt, expected)
        assert set(np.unique(gt)) == {255, *(c - 1 for c in np.unique(stored) if c)}
        assert os.path.basename(sample['data_samples'].img_path) == os.path.basename(
            sample['data_samples'].seg_map_path).replace('.png', '.jpg')


def test_cli(tmp_path):
    script = os.path.join(REPO, 'tools', 'dataset_converters', 'make_tiny_dataset.py')
    out = tmp_path / 'cli'
    # main(argv) in this interpreter, as in a new process; the refusal below runs the script as a user does
    result = run_in_process(script, 'ade20k', out, '--train', '2', '--val', '1', '--size', '32', '48', '--classes', '9',
                            '12', '--background', '4', '--seed', '5', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"labels": [\n    4,\n    9,\n    12\n  ]' in result.stdout
    assert sorted(os.listdir(out / 'images' / 'training')) == ['ADE_train_00000001.jpg', 'ADE_train_00000002.jpg']
    assert Image.open(out / 'annotations' / 'validation' / 'ADE_val_00000001.png').size == (48, 32)

    bad = subprocess.run([sys.executable, script, 'ade20k', str(tmp_path / 'bad'), '--classes', '3', '160'],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and '[160] not ADE20K class ids in 1..150' in bad.stderr
    assert 'Traceback' not in bad.stderr and not (tmp_path / 'bad').exists()

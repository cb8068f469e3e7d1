"""The tiny generated COCO: layout and encodings, determinism, bad arguments, the CLI, and mmdet's own CocoDataset and
LoadAnnotations reading it, with every decoded mask equal to the shape painted in the image."""
import colorsys
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mmfastvit.datasets import make_tiny_coco
from mmfastvit.datasets.synthetic.coco import (CATEGORIES, COCO_CLASSES, COCO_IDS, SATURATION_THRESHOLD,
                                               uncompressed_rle)

from helpers import run_in_process

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, 'tools', 'dataset_converters', 'make_tiny_dataset.py')
HUES = {cid: hue for cid, _, _, hue in CATEGORIES}


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
    root = tmp_path_factory.mktemp('tiny_coco')
    return make_tiny_coco(str(root), num_train=8, num_val=3, size=96, max_objects=3, crowd_prob=0.5, seed=1)


def _load(tiny, split):
    with open(os.path.join(tiny['root'], tiny[split]['ann_file'])) as f:
        return json.load(f)


def test_layout_and_encodings(tiny):
    root = tiny['root']
    assert tiny['classes'] == ['sports ball', 'kite', 'donut', 'tv']
    for split, images in (('train', 'train2017'), ('val', 'val2017')):
        content = _load(tiny, split)
        assert tiny[split]['ann_file'] == f'annotations/instances_{images}.json'
        assert tiny[split]['img_prefix'] == f'{images}/'
        assert [(c['id'], c['name']) for c in content['categories']] == list(zip(COCO_IDS, COCO_CLASSES))
        assert len(content['images']) == tiny[split]['num_images']
        assert len(content['annotations']) == tiny[split]['num_annotations'] == sum(tiny[split]['encodings'].values())
        for image in content['images']:
            with Image.open(os.path.join(root, images, image['file_name'])) as img:
                assert img.size == (image['width'], image['height']) and img.mode == 'RGB'
            assert sorted((image['width'], image['height'])) == [72, 96]
        for ann in content['annotations']:
            seg = ann['segmentation']
            if ann['iscrowd']:  # COCO's crowd form: uncompressed RLE
                assert isinstance(seg['counts'], list) and ann['category_id'] == 37
            elif isinstance(seg, dict):  # compressed RLE for the ring (a polygon cannot hold the hole)
                assert isinstance(seg['counts'], str) and ann['category_id'] == 60
            else:
                assert len(seg) == 1 and len(seg[0]) % 2 == 0 and ann['category_id'] in (37, 38, 72)
    assert all(n > 0 for n in tiny['train']['encodings'].values()), tiny['train']['encodings']
    # COCO's own ids (1..90 with gaps), e.g. person 1, sports ball 37, donut 60, tv 72, toothbrush 90
    ids = dict(zip(COCO_CLASSES, COCO_IDS))
    assert [ids[n] for n in ('person', 'sports ball', 'kite', 'donut', 'tv', 'toothbrush')] == [1, 37, 38, 60, 72, 90]
    ids = [img['id'] for split in ('train', 'val') for img in _load(tiny, split)['images']]
    assert ids == list(range(1, 12))  # unique across the splits


def test_boxes_and_areas_are_those_of_the_masks(tiny):
    from pycocotools.coco import COCO
    coco = COCO(os.path.join(tiny['root'], tiny['train']['ann_file']))
    for ann in coco.dataset['annotations']:
        mask = coco.annToMask(ann).astype(bool)
        rows, cols = np.nonzero(mask)
        assert ann['bbox'] == [cols.min(), rows.min(), cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min()]
        assert ann['area'] == mask.sum()


def test_deterministic_by_seed(tmp_path):
    kwargs = dict(num_train=2, num_val=1, size=64, crowd_prob=1.0)
    make_tiny_coco(str(tmp_path / 'a'), seed=3, **kwargs)
    make_tiny_coco(str(tmp_path / 'b'), seed=3, **kwargs)
    make_tiny_coco(str(tmp_path / 'c'), seed=4, **kwargs)
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b') != _digest(tmp_path / 'c')


@pytest.mark.parametrize('starts_with_one', [False, True])
def test_uncompressed_rle_decodes_to_the_mask(starts_with_one):
    from pycocotools import mask as mask_utils
    mask = np.random.default_rng(0).uniform(size=(7, 5)) > 0.6
    mask[0, 0] = starts_with_one
    rle = uncompressed_rle(mask)
    assert rle['size'] == [7, 5] and sum(rle['counts']) == 35 and (rle['counts'][0] == 0) == starts_with_one
    decoded = mask_utils.decode(mask_utils.frPyObjects(rle, 7, 5)).astype(bool)
    assert np.array_equal(decoded, mask)


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_train=0), 'num_train must be an int >= 1, got 0'),
    (dict(num_val=2.0), 'num_val must be an int >= 1, got 2.0'),
    (dict(size=32), 'size must be an int >= 48, got 32'),
    (dict(max_objects=0), 'max_objects must be an int >= 1'),
    (dict(crowd_prob=1.5), r'crowd_prob must be a number in \[0, 1\], got 1.5'),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_tiny_coco(str(tmp_path / 'out'), **kwargs)
    assert not (tmp_path / 'out').exists()


def test_cli(tmp_path):
    out = tmp_path / 'coco'
    # main(argv) in this interpreter, as in a new process; the refusal below runs the script as a user does
    done = run_in_process(CLI, 'coco', out, '--train', '2', '--val', '1', '--size', '64', '--crowd-prob', '0', cwd=REPO)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary['train']['num_images'] == 2 and summary['val']['num_images'] == 1
    assert summary['train']['encodings']['crowd_rle'] == 0
    assert (out / 'annotations' / 'instances_val2017.json').is_file() and len(list((out / 'train2017').iterdir())) == 2
    bad = subprocess.run([sys.executable, CLI, 'coco', str(tmp_path / 'bad'), '--size', '10'], capture_output=True,
                         text=True, cwd=REPO)
    assert bad.returncode == 2 and 'size must be an int >= 48, got 10' in bad.stderr
    assert not (tmp_path / 'bad').exists()


def _hue_saturation(rgb):
    hsv = np.array([colorsys.rgb_to_hsv(*px) for px in rgb.reshape(-1, 3) / 255.0])
    return hsv[:, 0].reshape(rgb.shape[:2]), hsv[:, 1].reshape(rgb.shape[:2])


def _hue_distance(a, b):
    d = np.abs(a - b) % 1.0
    return np.minimum(d, 1.0 - d)


@pytest.mark.parametrize('split', ['train', 'val'])
def test_mmdet_coco_dataset_reads_it_and_masks_are_the_drawn_shapes(tiny, split):
    """mmdet's CocoDataset (80 COCO classes) and LoadAnnotations decode every annotation (polygon, RLE, crowd RLE) to
    exactly the pixels of the image painted in that object's colour; the rest of the image is background."""
    from mmdet.datasets import CocoDataset
    from mmengine.registry import DefaultScope

    images = 'train2017/' if split == 'train' else 'val2017/'
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=True)]
    with DefaultScope.overwrite_default_scope('mmdet'):  # the transforms are mmdet's; other tests' scope is kept
        dataset = CocoDataset(data_root=tiny['root'], ann_file=tiny[split]['ann_file'], data_prefix=dict(img=images),
                              test_mode=split == 'val', pipeline=pipeline)
    assert len(dataset) == tiny[split]['num_images']
    assert tuple(dataset.metainfo['classes']) == COCO_CLASSES and dataset.cat_ids == list(COCO_IDS)
    content = _load(tiny, split)
    seen_instances = 0
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        anns = [a for a in content['annotations'] if a['image_id'] == info['img_id']]
        results = dataset[index]
        assert results['img'].shape == (info['height'], info['width'], 3)
        masks = results['gt_masks'].masks.astype(bool)
        labels = results['gt_bboxes_labels']
        assert len(masks) == len(anns) == len(info['instances'])
        # crowd regions stay in, flagged to be ignored (as COCO's crowds)
        assert results['gt_ignore_flags'].tolist() == [bool(a['iscrowd']) for a in anns]
        assert [COCO_IDS[label] for label in labels] == [a['category_id'] for a in anns]

        pixels = np.asarray(Image.open(info['img_path']).convert('RGB'))
        hue, saturation = _hue_saturation(pixels)
        painted = saturation > SATURATION_THRESHOLD
        assert np.array_equal(masks.any(0), painted)  # every painted pixel belongs to exactly one annotation
        assert masks.sum(0).max() == 1
        for mask, ann in zip(masks, anns):
            assert mask.any()
            assert _hue_distance(hue[mask], HUES[ann['category_id']]).max() < 0.05
        seen_instances += len(anns)
    assert seen_instances == tiny[split]['num_annotations']

"""The robustness loaders on generated sets in each released layout: labels are ImageNet-1k indices, ImageNet-C's
(corruption, severity) groups, the wnid list's sources, and bad layouts refused by name."""
import os
import os.path as osp

import pytest

pytest.importorskip('mmpretrain')

from mmfastvit.datasets import robustness as rob  # noqa: E402
from mmfastvit.datasets.robustness import ImageNetA, ImageNetC, ImageNetR, ImageNetSketch  # noqa: E402
from mmfastvit.datasets.synthetic.robustness import (make_tiny_imagenet_a, make_tiny_imagenet_c,  # noqa: E402
                                                     make_tiny_imagenet_r, make_tiny_imagenet_sketch, write_wnids)


@pytest.fixture(scope='module')
def wnids(tmp_path_factory):
    return write_wnids(str(tmp_path_factory.mktemp('meta') / 'wnids.txt'))


def _labels(dataset):
    return [dataset.get_data_info(i)['gt_label'] for i in range(len(dataset))]


@pytest.mark.parametrize('cls, make, classes', [(ImageNetA, make_tiny_imagenet_a, (1, 5, 7)),
                                                (ImageNetR, make_tiny_imagenet_r, (2, 5, 9))])
def test_200_class_sets_are_labelled_with_imagenet_indices(tmp_path, wnids, cls, make, classes):
    make(str(tmp_path), classes=classes, per_class=2)
    (tmp_path / 'README.txt').write_text('released archives have one')  # files beside the class folders are skipped
    dataset = cls(data_root=str(tmp_path), wnids_file=wnids)
    assert len(dataset) == 2 * len(classes)
    assert sorted(set(_labels(dataset))) == list(classes)
    assert dataset.metainfo['label_subset'] == classes
    assert len(dataset.metainfo['classes']) == 1000  # scored by a 1000-class model
    info = dataset.get_data_info(0)
    assert osp.basename(osp.dirname(info['img_path'])) == f'n{info["gt_label"]:08d}'


def test_sketch_reads_the_sketch_folder_or_the_class_folders(tmp_path, wnids):
    make_tiny_imagenet_sketch(str(tmp_path / 'released'), classes=(0, 3), per_class=1)
    dataset = ImageNetSketch(data_root=str(tmp_path / 'released'), wnids_file=wnids)
    assert _labels(dataset) == [0, 3]
    flat = ImageNetSketch(data_root=str(tmp_path / 'released' / 'sketch'), wnids_file=wnids)
    assert _labels(flat) == [0, 3]


@pytest.mark.parametrize('nested', [False, True])
def test_imagenet_c_groups_each_corruption_and_severity(tmp_path, wnids, nested):
    make_tiny_imagenet_c(str(tmp_path), corruptions=['gaussian_noise', 'fog', 'pixelate'], severities=[1, 3],
                         classes=(0, 4), per_class=2, nested=nested)
    assert osp.isdir(tmp_path / ('weather/fog/3' if nested else 'fog/3'))
    dataset = ImageNetC(data_root=str(tmp_path), corruptions=['fog', 'gaussian_noise'], severities=[3, 1],
                        wnids_file=wnids)
    groups = dataset.metainfo['corruption_groups']
    assert [(c, s) for c, s, _, _ in groups] == [('fog', 1), ('fog', 3), ('gaussian_noise', 1),
                                                 ('gaussian_noise', 3)]
    assert [(start, stop) for _, _, start, stop in groups] == [(0, 4), (4, 8), (8, 12), (12, 16)]
    for corruption, severity, start, stop in groups:
        for i in range(start, stop):
            path = dataset.get_data_info(i)['img_path']
            assert f'{corruption}{os.sep}{severity}{os.sep}' in path
    assert sorted(set(_labels(dataset))) == [0, 4]


def test_imagenet_c_missing_folders_are_named(tmp_path, wnids):
    make_tiny_imagenet_c(str(tmp_path), corruptions=['fog'], severities=[1, 2])
    with pytest.raises(FileNotFoundError, match=r'lacks 4 of the 6 .*fog/3, snow/1, snow/2, snow/3'):
        ImageNetC(data_root=str(tmp_path), corruptions=['fog', 'snow'], severities=[1, 2, 3], wnids_file=wnids)
    with pytest.raises(ValueError, match=r"\['rain'\] are not among"):
        ImageNetC(data_root=str(tmp_path), corruptions=['rain'], wnids_file=wnids)
    with pytest.raises(ValueError, match=r'severities \[0\] are not among'):
        ImageNetC(data_root=str(tmp_path), corruptions=['fog'], severities=[0], wnids_file=wnids)


def test_wnid_sources(tmp_path, monkeypatch):
    # a LOC_synset_mapping.txt-style file, unsorted: the loader sorts it, as mmpretrain's ImageNet labels are sorted
    lines = [f'n{i:08d} class number {i}' for i in range(1000)]
    mapping = tmp_path / 'LOC_synset_mapping.txt'
    mapping.write_text('\n'.join(reversed(lines)) + '\n')
    assert rob.read_wnids(str(mapping))[:2] == ['n00000000', 'n00000001']
    # an ImageNet train/ folder of class folders
    for i in range(1000):
        os.makedirs(tmp_path / 'train' / f'n{i:08d}')
    assert rob.read_wnids(str(tmp_path / 'train'))[-1] == 'n00000999'
    short = tmp_path / 'short.txt'
    short.write_text('n00000001\nn00000002\n')
    with pytest.raises(ValueError, match='has 2 wnids'):
        rob.read_wnids(str(short))
    # without a file, 1000 class folders are their own list, and a subset needs a source
    make_tiny_imagenet_a(str(tmp_path / 'a'), classes=(1, 5))
    monkeypatch.setattr(rob, 'packaged_wnids_file', lambda: None)
    with pytest.raises(ValueError, match=r'2 class folders.*wnids_file.*LOC_synset_mapping\.txt.*install timm'):
        ImageNetA(data_root=str(tmp_path / 'a'))
    assert rob.resolve_wnids(None, [f'n{i:08d}' for i in range(1000)], 'x')[1].startswith('the 1000 class folders')


def test_timm_ships_the_sorted_wnids():
    path = rob.packaged_wnids_file()
    if path is None:
        pytest.skip('timm is not installed')
    wnids = rob.read_wnids(path)
    assert wnids[0] == 'n01440764' and wnids[-1] == 'n15075141'  # tench ... toilet tissue, as mmpretrain's classes


def test_stray_folders_are_refused(tmp_path, wnids):
    make_tiny_imagenet_a(str(tmp_path), classes=(1,))
    os.makedirs(tmp_path / 'not_a_class')
    with pytest.raises(ValueError, match=r"\['not_a_class'\] that are not wnids"):
        ImageNetA(data_root=str(tmp_path), wnids_file=wnids)
    with pytest.raises(FileNotFoundError, match='ImageNet-R folder .*does not exist'):
        ImageNetR(data_root=str(tmp_path / 'nowhere'), wnids_file=wnids)


def test_make_tiny_dataset_subcommand_writes_the_layouts(tmp_path):
    import json

    from helpers import REPO, check_ok, run_in_process  # main(argv) in this interpreter, as in a new process
    script = osp.join(REPO, 'tools', 'dataset_converters', 'make_tiny_dataset.py')
    result = check_ok(run_in_process(script, 'robustness', tmp_path / 'out', '--corruptions', 'snow', '--severities',
                                     '5', '--nested', cwd=tmp_path))
    summary = json.loads(result.stdout)
    assert summary['imagenet-c']['num_images'] == 2 and osp.isdir(tmp_path / 'out/imagenet-c/weather/snow/5/n00000001')
    wnids = summary['wnids_file']
    assert ImageNetC(data_root=str(tmp_path / 'out/imagenet-c'), corruptions=['snow'], severities=[5],
                     wnids_file=wnids).metainfo['corruption_groups'] == (('snow', 5, 0, 2),)
    assert ImageNetSketch(data_root=str(tmp_path / 'out/imagenet-sketch'), wnids_file=wnids).metainfo[
        'label_subset'] == (0, 1, 2, 3)
    bad = run_in_process(script, 'robustness', tmp_path / 'bad', '--corruptions', 'rain', cwd=tmp_path)
    assert bad.returncode == 2 and "['rain'] are not among" in bad.stderr

"""demo/image_demo.py: one image through the task's Inferencer, by config path or model name, picture written."""
import importlib.util
import os.path as osp

import cv2
import numpy as np
import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_demo():
    spec = importlib.util.spec_from_file_location('image_demo', osp.join(REPO, 'demo', 'image_demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


image_demo = _load_demo()


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
    """A 96 x 128 JPEG with some structure (gradients and a disc)."""
    path = tmp_path_factory.mktemp('demo') / 'photo.jpg'
    y, x = np.mgrid[0:96, 0:128]
    img = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.uint8)
    cv2.circle(img, (64, 48), 20, (255, 255, 255), -1)
    cv2.imwrite(str(path), img)
    return path


def _picture(folder, name):
    img = cv2.imread(str(folder / name))
    assert img is not None, f'no picture {name} in {folder}: {sorted(p.name for p in folder.iterdir())}'
    return img


def test_segmentation_config_writes_the_coloured_picture(photo, tmp_path):
    config = osp.join(REPO, 'configs', 'sem_fpn_fastvit_t8_ade20k_40k.py')
    assert image_demo.main([str(photo), config, '--out-dir', str(tmp_path)]) == 0
    drawn = _picture(tmp_path / 'vis', 'photo.jpg')
    assert drawn.shape == (96, 128, 3)
    assert np.abs(drawn.astype(int) - cv2.imread(str(photo)).astype(int)).mean() > 1  # the classes are drawn over it


def test_segmentation_pictures_are_labelled_with_the_config_dataset_classes():
    from mmengine.config import Config

    cfg = Config.fromfile(osp.join(REPO, 'configs', 'sem_fpn_fastvit_t8_ade20k_40k.py'))
    assert image_demo.seg_dataset_name(cfg) == 'ade20k'  # not mmseg's Cityscapes default
    cfg.test_dataloader.dataset.type = 'MyOwnDataset'
    assert image_demo.seg_dataset_name(cfg) is None


def test_model_name_runs_the_classification_inferencer(photo, tmp_path, capsys):
    assert image_demo.main([str(photo), 'fastvit-t8_in1k', '--out-dir', str(tmp_path)]) == 0
    assert _picture(tmp_path / 'vis', 'photo.png').shape[:2] == (96, 128)
    printed = capsys.readouterr().out
    assert 'no --weights' in printed and f'wrote the picture under {tmp_path}' in printed


@pytest.mark.parametrize('args, message', [
    (['missing.jpg', 'fastvit-t8_in1k'], 'image "missing.jpg" does not exist'),
    (['PHOTO', 'fastvit-t9'], 'close matches'),
    (['PHOTO', 'configs/no_such_config.py'], 'config "configs/no_such_config.py" does not exist'),
    (['PHOTO', 'fmvit-t_in1k', '--weights', 'pretrained'], 'has no published weights'),
])
def test_bad_input_exits_2_naming_it(photo, tmp_path, capsys, args, message):
    args = [str(photo) if arg == 'PHOTO' else arg for arg in args]
    with pytest.raises(SystemExit) as exit_info:
        image_demo.main(args + ['--out-dir', str(tmp_path / 'out')])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()

"""`python tools/train.py configs/mask_rcnn_fastvit_t8_1x.py` as shipped, its backbone named by Apple's URL: the
weights come from a server on 127.0.0.1 standing in for Apple's site (MMFASTVIT_WEIGHTS_MIRROR), are converted and
cached, and training starts from them; a download that breaks off stops the run with one line, nothing cached."""
import os
import os.path as osp

from det_helpers import TRAIN, check, config_path, run, shrink
from weights_server import MIRROR_ENV, apple_relpath, apple_site_dir, serve_apple_weights  # noqa: F401

from mmfastvit.convert.download import apple_weights_url, cache_paths

URL = apple_weights_url('t8')


def shipped_init_cfg(data_root):
    """The tiny-set options of the other detection tests, minus their ``init_cfg=None``: the config's own URL stays."""
    options = shrink(data_root)
    assert options[1] == 'model.backbone.init_cfg=None'
    return [options[0]] + options[2:]


def test_train_downloads_converts_and_starts_from_apples_weights(tiny_coco, apple_site_dir, tmp_path):
    torch_home = tmp_path / 'torch_home'
    with serve_apple_weights(apple_site_dir, generate=False) as mirror:
        env = {MIRROR_ENV: mirror, 'TORCH_HOME': str(torch_home)}
        result = check(run(TRAIN, config_path('t8'), '--work-dir', tmp_path / 'work_dir', '--no-validate',
                           *shipped_init_cfg(tiny_coco['root']), cwd=tmp_path, env=env))
        assert mirror.requests == ['/' + apple_relpath('t8')]
    log = result.stdout + result.stderr
    assert f'downloading {URL} from {mirror}{apple_relpath("t8")}' in log
    assert f'load backbone. in model from: {URL}' in log
    assert 'unexpected key in source state_dict: final_conv.' in log and 'missing keys' not in log
    paths = cache_paths(URL, hub_dir=str(torch_home / 'hub'))
    assert all(osp.isfile(p) for p in paths)
    assert osp.isfile(tmp_path / 'work_dir' / 'epoch_1.pth')


def test_train_stops_with_one_line_when_the_download_breaks_off(tiny_coco, apple_site_dir, tmp_path):
    torch_home = tmp_path / 'torch_home'
    with serve_apple_weights(apple_site_dir, generate=False, break_after=50_000) as mirror:
        env = {MIRROR_ENV: mirror, 'TORCH_HOME': str(torch_home)}
        result = run(TRAIN, config_path('t8'), '--work-dir', tmp_path / 'work_dir', '--no-validate',
                     *shipped_init_cfg(tiny_coco['root']), cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('train.py: error: download of ' + URL) and 'is incomplete: received 50000 of' in last
    assert 'Traceback' not in result.stderr
    assert not torch_home.exists() or not [f for _, _, files in os.walk(torch_home) for f in files]

"""Apple's weights by URL, against a server on 127.0.0.1 that serves generated Apple-format files: download -> convert
-> cache -> load through a config; the warm cache offline; truncated, changed, missing and foreign files refused with
nothing cached."""
import hashlib
import importlib.util
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from weights_server import MIRROR_ENV, REPO, apple_relpath, apple_site_dir, apple_weights_mirror  # noqa: F401
from weights_server import serve_apple_weights, write_apple_file

from helpers import LogRecords

from mmfastvit.convert import fastvit_to_mmfastvit
from mmfastvit.convert.download import (APPLE_ARCHS, APPLE_WEIGHTS_PREFIX, WeightsChecksumError, WeightsDownloadError,
                                        apple_weights_url, cache_paths, fetch_apple_weights, parse_apple_weights_url)
from mmfastvit.fileio import CheckpointError
from mmfastvit.models import FastViTClassifier
from mmfastvit.models.pretrained import load_from_apple
from mmfastvit.registry import MODELS

URL = apple_weights_url('t8')
DET_T8 = osp.join(REPO, 'configs', 'mask_rcnn_fastvit_t8_1x.py')


def cache_files(torch_home) -> list:
    """Every file under ``torch_home``, relative to it."""
    return sorted(osp.relpath(osp.join(root, name), torch_home)
                  for root, _, names in os.walk(torch_home) for name in names)


def sha256(path) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def converted_backbone(apple_file) -> dict:
    """The served file converted directly (no download, no cache): what the backbone must end up holding."""
    state = fastvit_to_mmfastvit(str(apple_file)).state_dict
    return {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}


def config_backbone(config=DET_T8):
    """The backbone of a shipped config, with its init_cfg as shipped, initialized through mmengine."""
    cfg = Config.fromfile(config)
    assert cfg.model.backbone.init_cfg.checkpoint == URL  # the config names Apple's URL itself
    backbone = MODELS.build(cfg.model.backbone)
    backbone.init_weights()
    return backbone


def assert_same_weights(backbone, expected):
    loaded = backbone.state_dict()
    assert set(loaded) == {k for k in expected if not k.startswith('final_conv.')}
    for key, value in loaded.items():
        assert torch.equal(value, expected[key]), key


@pytest.fixture()
def log_records():
    """Messages to mmengine's current logger (which the loader reports to) during the test."""
    logger = MMLogger.get_instance('test_download')
    records = LogRecords()
    logger.addHandler(records)
    yield records.messages
    logger.removeHandler(records)


def test_urls_are_apples():
    assert apple_weights_url('sa12') == (
        'https://docs-assets.developer.apple.com/ml-research/models/fastvit/image_classification_models/'
        'fastvit_sa12.pth.tar')
    assert apple_weights_url('MA36', distilled=True, reparam=True) == (
        'https://docs-assets.developer.apple.com/ml-research/models/fastvit/image_classification_distilled_models/'
        'fastvit_ma36_reparam.pth.tar')
    for arch in APPLE_ARCHS:
        for distilled in (False, True):
            for reparam in (False, True):
                url = apple_weights_url(arch, distilled, reparam)
                assert url == APPLE_WEIGHTS_PREFIX + apple_relpath(arch, distilled, reparam)
                assert tuple(parse_apple_weights_url(url)) == (arch, distilled, reparam)
    with pytest.raises(ValueError, match=r'arch "t9" is not one of \[\'t8\', \'t12\''):
        apple_weights_url('t9')
    for bad in (APPLE_WEIGHTS_PREFIX + 'image_classification_models/fastvit_t9.pth.tar',
                APPLE_WEIGHTS_PREFIX + 'segmentation_models/fastvit_sa12.pth.tar'):
        with pytest.raises(CheckpointError, match='is not one of Apple\'s published FastViT checkpoints'):
            parse_apple_weights_url(bad)


def test_mmengine_routes_apple_urls_to_mmfastvit():
    from mmengine.runner.checkpoint import CheckpointLoader, load_from_http, load_from_local
    assert CheckpointLoader._get_checkpoint_loader(URL) is load_from_apple
    assert CheckpointLoader._get_checkpoint_loader(apple_weights_url('ma36', True, True)) is load_from_apple
    assert CheckpointLoader._get_checkpoint_loader('https://download.openmmlab.com/x.pth') is load_from_http
    assert CheckpointLoader._get_checkpoint_loader('checkpoints/fastvit_t8_in1k.pth') is load_from_local


def test_download_convert_cache_load_through_the_config_then_offline(apple_site_dir, tmp_path, monkeypatch, capfd,
                                                                     log_records):
    torch_home = tmp_path / 'torch_home'
    monkeypatch.setenv('TORCH_HOME', str(torch_home))
    served = apple_site_dir / apple_relpath('t8')
    expected = converted_backbone(served)
    with serve_apple_weights(apple_site_dir, generate=False) as mirror:
        monkeypatch.setenv(MIRROR_ENV, mirror)
        assert_same_weights(config_backbone(), expected)
        assert mirror.requests == ['/' + apple_relpath('t8')]

    # the progress bar (stderr) and the log say what was fetched from where
    err = capfd.readouterr().err
    assert 'fastvit_t8.pth.tar' in err and '100%' in err
    log = '\n'.join(log_records)
    assert f'downloading {URL} from {mirror}{apple_relpath("t8")}' in log
    assert f'load backbone. in model from: {URL}' in log  # mmengine's PretrainedInit, through our loader

    # the cache: keyed by Apple's URL, in torch's hub folder, Apple's file + the conversion + the record
    paths = cache_paths(URL)
    assert paths.source.startswith(str(torch_home / 'hub' / 'checkpoints' / 'mmfastvit'))
    assert cache_files(torch_home) == sorted(osp.relpath(p, torch_home) for p in paths)
    assert sha256(paths.source) == sha256(served)
    record = json.loads(open(paths.record).read())
    assert record['url'] == URL and record['sha256'] == sha256(served) and record['bytes'] == osp.getsize(served)
    assert record['downloaded_from'] == mirror + apple_relpath('t8')
    assert record['converted_sha256'] == sha256(paths.converted)

    # offline, warm cache: the server is gone, the same config initializes the same weights
    log_records.clear()
    assert_same_weights(config_backbone(), expected)
    assert not any('downloading' in m for m in log_records)
    # and what is not cached fails, naming its URL, leaving nothing behind
    before = cache_files(torch_home)
    distilled = apple_weights_url('t8', distilled=True)
    with pytest.raises(WeightsDownloadError, match=f'downloading {distilled} .*failed.*Nothing was cached'):
        fetch_apple_weights(distilled)
    assert cache_files(torch_home) == before


def test_whole_classifier_through_load_checkpoint(apple_weights_mirror):
    """load_from = <Apple URL> (the *_384 configs) and mmengine's load_checkpoint get the whole classifier."""
    from mmengine.runner import load_checkpoint
    model = FastViTClassifier('t8')
    load_checkpoint(model, URL, map_location='cpu', strict=True, logger='silent')
    expected = torch.load(cache_paths(URL).converted, weights_only=True)['state_dict']
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())


def test_reparam_file_converts_to_the_fused_model(apple_weights_mirror):
    from mmengine.runner import load_checkpoint
    url = apple_weights_url('t8', reparam=True)
    model = FastViTClassifier('t8', deploy=True)
    load_checkpoint(model, url, map_location='cpu', strict=True, logger='silent')
    meta = torch.load(fetch_apple_weights(url), weights_only=True)['meta']
    assert meta['deploy'] is True and meta['source'] == url and meta['source_format'] == 'apple_fused'


def test_fresh_process_registers_the_loader_from_the_config_alone(apple_weights_mirror, tmp_path):
    """No mmfastvit import in the script: the config's type='mmfastvit.FastViT' brings the loader with it."""
    code = ('import sys; from mmengine.config import Config; from mmengine.registry import MODELS; '
            f'cfg = Config.fromfile({DET_T8!r}); assert not any(m.startswith("mmfastvit") for m in sys.modules); '
            'backbone = MODELS.build(cfg.model.backbone); backbone.init_weights(); '
            'import torch; torch.save(backbone.state_dict(), sys.argv[1])')
    out = tmp_path / 'backbone.pth'
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1')
    done = subprocess.run([sys.executable, '-c', code, str(out)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = torch.load(cache_paths(URL).converted, weights_only=True)['state_dict']
    for key, value in torch.load(out, weights_only=True).items():
        assert torch.equal(value, expected[f'backbone.{key}']), key


def test_truncated_download_is_refused_and_nothing_cached(apple_site_dir, tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    size = osp.getsize(apple_site_dir / apple_relpath('t8'))
    with serve_apple_weights(apple_site_dir, generate=False, break_after=100_000) as mirror:
        monkeypatch.setenv(MIRROR_ENV, mirror)
        with pytest.raises(WeightsDownloadError, match=f'download of {URL} .*is incomplete: received 100000 of the '
                           f'{size} bytes its Content-Length announced'):
            config_backbone()
    assert cache_files(tmp_path / 'torch_home') == []
    assert not (tmp_path / 'torch_home').exists()  # not even the folders


def test_missing_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    with serve_apple_weights(tmp_path / 'empty_site', generate=False) as mirror:
        monkeypatch.setenv(MIRROR_ENV, mirror)
        with pytest.raises(WeightsDownloadError, match=f'downloading {URL} .*failed: HTTP 404'):
            fetch_apple_weights(URL)
    assert cache_files(tmp_path / 'torch_home') == []


def test_changed_file_is_refused_and_cached_files_are_checked(tmp_path, monkeypatch, log_records):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    site = tmp_path / 'site'
    served = write_apple_file(site, 't8', seed=1)
    original = open(served, 'rb').read()
    with serve_apple_weights(site, generate=False) as mirror:
        monkeypatch.setenv(MIRROR_ENV, mirror)
        paths = cache_paths(URL)
        fetch_apple_weights(URL, progress=False)
        first = {p: open(p, 'rb').read() for p in paths}

        # a damaged conversion is redone from the cached Apple file, without the network
        with open(paths.converted, 'r+b') as f:
            f.seek(1000)
            f.write(b'\0' * 16)
        requests = len(mirror.requests)
        assert fetch_apple_weights(URL, progress=False) == paths.converted
        assert len(mirror.requests) == requests
        assert any('converting the cached' in m for m in log_records)
        assert_same_weights(config_backbone(), converted_backbone(served))

        # Apple's file changes (its sha256 differs from the record): the new download is refused
        write_apple_file(site, 't8', seed=2)
        os.remove(paths.converted)
        with open(paths.source, 'r+b') as f:  # and the cached copy no longer matches its record either
            f.write(b'junk')
        with pytest.raises(WeightsChecksumError, match=f'{URL}: the downloaded file .* differs from the one first '
                           f'downloaded .*{paths.record}'):
            fetch_apple_weights(URL, progress=False)
        assert len(mirror.requests) == requests + 1
        assert any('does not match the sha256' in m for m in log_records)
        # nothing new in the cache: the record as it was, no conversion, no temporary file
        assert cache_files(tmp_path / 'torch_home') == sorted(osp.relpath(p, tmp_path / 'torch_home')
                                                              for p in (paths.source, paths.record))
        assert open(paths.record, 'rb').read() == first[paths.record]

        # the original file again: accepted (it matches the record)
        with open(served, 'wb') as f:
            f.write(original)
        fetch_apple_weights(URL, progress=False)
        assert open(paths.source, 'rb').read() == first[paths.source]


@pytest.mark.parametrize('served', ['resnet', 'reparam_as_unfused', 'truncated_pickle'])
def test_a_file_that_is_not_the_fastvit_checkpoint_is_refused(apple_site_dir, tmp_path, monkeypatch, served):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    site = tmp_path / 'site'
    target = site / apple_relpath('t8')
    target.parent.mkdir(parents=True)
    if served == 'resnet':
        torch.save({'state_dict': {'conv1.weight': torch.zeros(64, 3, 7, 7), 'fc.weight': torch.zeros(10, 64)}}, target)
        match = 'not a FastViT checkpoint'
    elif served == 'reparam_as_unfused':
        shutil.copy(apple_site_dir / apple_relpath('t8', reparam=True), target)
        match = 'its keys are those of the apple_fused layout'
    else:  # whole as HTTP goes, but not a whole checkpoint
        data = (apple_site_dir / apple_relpath('t8')).read_bytes()
        target.write_bytes(data[:len(data) // 2])
        match = 'not a readable torch checkpoint'
    with serve_apple_weights(site, generate=False) as mirror:
        monkeypatch.setenv(MIRROR_ENV, mirror)
        with pytest.raises(CheckpointError, match=f'{URL} is not Apple\'s unfused FastViT-T8 ImageNet checkpoint: '
                           f'.*{match}.*Nothing was cached'):
            config_backbone()
    assert cache_files(tmp_path / 'torch_home') == []


def test_local_paths_keep_working(apple_site_dir, tmp_path):
    from mmengine.runner import load_checkpoint
    converted = tmp_path / 'fastvit_t8_in1k.pth'
    fastvit_to_mmfastvit(str(apple_site_dir / apple_relpath('t8')), str(converted))
    model = FastViTClassifier('t8')
    load_checkpoint(model, str(converted), map_location='cpu', strict=True, logger='silent')
    expected = torch.load(converted, weights_only=True)['state_dict']
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())


def _train_tool():
    spec = importlib.util.spec_from_file_location('mmfastvit_tool_train_download', osp.join(REPO, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_tool_accepts_apple_urls_and_names_the_fixes(tmp_path, capsys):
    tool = _train_tool()
    cfg = Config.fromfile(DET_T8)
    tool.check_pretrained(cfg, DET_T8)  # the URL itself: nothing to check locally, no download here

    cfg.model.backbone.init_cfg.checkpoint = APPLE_WEIGHTS_PREFIX + 'image_classification_models/fastvit_t9.pth.tar'
    with pytest.raises(SystemExit):
        tool.check_pretrained(cfg, DET_T8)
    assert 'fastvit_t9.pth.tar" is not one of Apple\'s published FastViT checkpoints' in capsys.readouterr().err

    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'missing.pth')
    with pytest.raises(SystemExit):
        tool.check_pretrained(cfg, DET_T8)
    err = capsys.readouterr().err
    assert f'"{tmp_path / "missing.pth"}" (from config "{DET_T8}") does not exist' in err
    assert f'model.backbone.init_cfg.checkpoint={URL}' in err and 'fastvit_to_mmfastvit.py' in err


SHIPPED = [f'mask_rcnn_fastvit_{v}_1x.py' for v in APPLE_ARCHS] + \
    [f'sem_fpn_fastvit_{v}_ade20k_40k.py' for v in APPLE_ARCHS] + \
    [f'hand_mesh_fastvit_{v}_freihand.py' for v in ('sa12', 'ma36')]


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_dense_configs_default_to_apples_url(name):
    cfg = Config.fromfile(osp.join(REPO, 'configs', name))
    backbone = cfg.model.backbone
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=apple_weights_url(backbone.arch), prefix='backbone.')


@pytest.mark.parametrize('arch', APPLE_ARCHS)
def test_fine_tuning_configs_start_from_apples_url(arch):
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'fastvit_{arch}_in1k_384.py'))
    assert cfg.load_from == apple_weights_url(arch)

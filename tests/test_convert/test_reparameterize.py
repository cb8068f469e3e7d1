"""tools/model_converters/reparameterize.py: a trained classifier checkpoint -> its deploy checkpoint."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmfastvit.convert.reparameterize import build_model_from_config, reparameterize_checkpoint
from mmfastvit.fileio import CheckpointError
from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_

from helpers import run_in_process

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'model_converters', 'reparameterize.py')
CONFIG = osp.join(REPO, 'configs', 'fastvit_sa12_in1k.py')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """An SA12 classifier checkpoint with non-trivial BatchNorm statistics and layer scales (as training leaves)."""
    model = build_model_from_config(Config.fromfile(CONFIG))
    randomize_fusable_state_(model, seed=5)
    path = tmp_path_factory.mktemp('reparam') / 'sa12.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 300}}, path)
    return model, path


def logits(model, x):
    with torch.no_grad():
        return model(x, mode='tensor')


def test_output_loads_with_deploy_true_and_predicts_the_same(trained, tmp_path):
    model, path = trained
    out = tmp_path / 'sa12_deploy.pth'
    done = run_in_process(TOOL, CONFIG, path, out, '--shape', '64', cwd=REPO)  # main(argv), as in a new process
    assert done.returncode == 0, done.stderr
    assert 'fused vs unfused outputs: relative error' in done.stdout

    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({'model.backbone.deploy': True})  # what a user passes as --cfg-options
    deploy = build_model_from_config(cfg)
    ckpt = torch.load(out, weights_only=True)
    deploy.load_state_dict(ckpt['state_dict'], strict=True)
    assert ckpt['meta']['fusion_level'] == 'full'
    assert deploy.backbone.fused_level == 'full'
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deploy.modules())

    x = torch.rand(4, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    expected = logits(model, x)
    actual = logits(deploy, x)
    assert (actual - expected).abs().max() < 1e-4 * expected.abs().max()
    assert torch.equal(actual.argmax(1), expected.argmax(1))


def test_refuses_fused_input_and_missing_files(trained, tmp_path):
    _, path = trained
    fused = tmp_path / 'fused.pth'
    reparameterize_checkpoint(CONFIG, str(path), str(fused), shape=(64, 64))
    with pytest.raises(CheckpointError, match='already fused'):
        reparameterize_checkpoint(CONFIG, str(fused), str(tmp_path / 'again.pth'), shape=(64, 64))
    assert not (tmp_path / 'again.pth').exists()
    with pytest.raises(FileNotFoundError, match='checkpoint "nope.pth" does not exist'):
        reparameterize_checkpoint(CONFIG, 'nope.pth', str(tmp_path / 'x.pth'))
    with pytest.raises(CheckpointError, match='is the input checkpoint'):
        reparameterize_checkpoint(CONFIG, str(path), str(path))

    # from the command line, as a user runs it: the exit status and the message
    done = subprocess.run([sys.executable, TOOL, CONFIG, str(tmp_path / 'nope.pth'), str(tmp_path / 'y.pth')],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1 and 'does not exist' in done.stderr
    assert not (tmp_path / 'y.pth').exists()

"""Apple's and timm's checkpoints -> mmfastvit, checked against timm's own model and its ``checkpoint_filter_fn``."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers import run_in_process
from weights_server import load_manifest, random_state_dict

from mmfastvit.convert import apple_to_mmfastvit, detect_format, fastvit_to_mmfastvit, mmfastvit_to_apple
from mmfastvit.fileio import CheckpointError
from mmfastvit.models.classifier import FastViTClassifier
from mmfastvit.models.utils.reparam import reparameterize_model

timm = pytest.importorskip('timm')
from timm.models.fastvit import checkpoint_filter_fn  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VARIANTS = ('t8', 't12', 's12', 'sa12', 'sa24', 'sa36', 'ma36')
TOOL = osp.join(REPO, 'tools', 'model_converters', 'fastvit_to_mmfastvit.py')
INPUT = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.fixture(scope='module')
def manifest():
    return load_manifest()


def timm_logits(arch, state_dict):
    """timm's model, loaded the way timm loads Apple's files: through its ``checkpoint_filter_fn``."""
    model = timm.create_model(f'fastvit_{arch}', pretrained=False).eval()
    model.load_state_dict(checkpoint_filter_fn(state_dict, model), strict=True)
    with torch.no_grad():
        return model(INPUT)


def our_logits(path, deploy=False):
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    model = FastViTClassifier(ckpt['meta']['arch'], num_classes=ckpt['meta']['num_classes'], deploy=deploy).eval()
    model.load_state_dict(ckpt['state_dict'], strict=True)
    with torch.no_grad():
        return model(INPUT)


@pytest.mark.parametrize('arch', VARIANTS)
def test_rename_tables_cover_apple_keys_and_shapes_both_ways(arch, manifest):
    """Our unfused and reference-fused classifiers, in Apple's names, are exactly Apple's releases' keys and shapes."""
    model = FastViTClassifier(arch)
    for form in ('apple_unfused', 'apple_fused'):
        if form == 'apple_fused':
            reparameterize_model(model, 'reference')
        ours = model.state_dict()
        apple = mmfastvit_to_apple(ours)
        assert {k: list(v.shape) for k, v in apple.items()} == manifest[arch][form]
        assert list(apple_to_mmfastvit(apple)) == list(ours)


@pytest.mark.parametrize('arch', VARIANTS)
def test_apple_unfused_and_fused_match_timm(arch, manifest, tmp_path):
    apple = random_state_dict(manifest[arch]['apple_unfused'], seed=VARIANTS.index(arch))
    expected = timm_logits(arch, apple)
    assert expected.abs().max() > 0.1  # the comparison below is not between two near-zero outputs

    src = tmp_path / f'fastvit_{arch}.pth.tar'
    torch.save({'state_dict': apple}, src)
    result = fastvit_to_mmfastvit(str(src), str(tmp_path / 'unfused.pth'))
    assert (result.source_format, result.arch, result.deploy) == ('apple_unfused', arch, False)
    assert (our_logits(tmp_path / 'unfused.pth') - expected).abs().max() < 1e-4

    # Apple's fused release, reproduced: fuse ours, rename to Apple's fused names (exactly the manifest's keys).
    model = FastViTClassifier(arch).eval()
    model.load_state_dict(result.state_dict)
    fused = mmfastvit_to_apple(reparameterize_model(model, 'reference').state_dict())
    assert {k: list(v.shape) for k, v in fused.items()} == manifest[arch]['apple_fused']
    src = tmp_path / f'fastvit_{arch}_reparam.pth.tar'
    torch.save(fused, src)  # a bare dict this time
    result = fastvit_to_mmfastvit(str(src), str(tmp_path / 'fused.pth'))
    assert (result.source_format, result.arch, result.deploy) == ('apple_fused', arch, True)
    assert (our_logits(tmp_path / 'fused.pth', deploy=True) - expected).abs().max() < 1e-4


# every variant as .pth; the file format is variant-independent, so two variants cover .safetensors
@pytest.mark.parametrize('arch,suffix', [(arch, '.pth') for arch in VARIANTS] + [('t8', '.safetensors'),
                                                                                ('sa12', '.safetensors')])
def test_timm_checkpoints_match_timm(arch, suffix, manifest, tmp_path):
    model = timm.create_model(f'fastvit_{arch}', pretrained=False).eval()
    model.load_state_dict(checkpoint_filter_fn(random_state_dict(manifest[arch]['apple_unfused'], seed=3), model))
    with torch.no_grad():
        expected = model(INPUT)
    for form in ('unfused', 'fused'):
        if form == 'fused':
            model = timm.utils.reparameterize_model(model)
        src = str(tmp_path / f'{arch}_{form}{suffix}')
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if suffix == '.safetensors':
            from safetensors.torch import save_file
            save_file(state, src)
        else:
            torch.save(state, src)
        result = fastvit_to_mmfastvit(src, str(tmp_path / 'out.pth'))
        assert (result.source_format, result.arch) == (f'timm_{form}', arch)
        assert (our_logits(tmp_path / 'out.pth', deploy=result.deploy) - expected).abs().max() < 1e-4


def test_detect_format_names_what_it_found():
    assert detect_format({'backbone.stem.0.reparam_conv.weight': torch.zeros(1)}) == 'mmfastvit'
    assert detect_format({'network.0.0.token_mixer.reparam_conv.weight': torch.zeros(1)}) == 'apple_fused'
    assert detect_format({'stem.0.conv_kxk.0.conv.weight': torch.zeros(1)}) == 'timm_unfused'
    with pytest.raises(CheckpointError, match='mixes fused'):
        detect_format({'stem.0.conv_kxk.0.conv.weight': torch.zeros(1),
                       'stem.1.reparam_conv.weight': torch.zeros(1)})


# --- refusals: each names the problem and writes nothing ------------------------------------------------------------
@pytest.fixture()
def apple_t8(manifest, tmp_path):
    state = random_state_dict(manifest['t8']['apple_unfused'])
    path = tmp_path / 'fastvit_t8.pth.tar'
    torch.save({'state_dict': state}, path)
    return path, state


def assert_refused(src, dst, match, **kwargs):
    with pytest.raises((CheckpointError, FileNotFoundError, KeyError), match=match):
        fastvit_to_mmfastvit(str(src), str(dst), **kwargs)
    assert not dst.exists()
    assert not [f for f in os.listdir(dst.parent) if f.startswith(f'.{dst.name}')], 'a temporary file was left'


def test_refuses_truncated_and_empty_files(apple_t8, tmp_path):
    path, _ = apple_t8
    data = path.read_bytes()
    truncated = tmp_path / 'truncated.pth.tar'
    truncated.write_bytes(data[:len(data) // 2])
    assert_refused(truncated, tmp_path / 'out.pth', 'truncated or corrupt')
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    assert_refused(empty, tmp_path / 'out.pth', 'empty')
    assert_refused(tmp_path / 'missing.pth', tmp_path / 'out.pth', 'does not exist')


def test_refuses_wrong_variant(apple_t8, tmp_path):
    path, _ = apple_t8
    assert_refused(path, tmp_path / 'out.pth', 'FastViT-T8 weights, not the requested FastViT-SA12', arch='sa12')


def test_refuses_foreign_checkpoint(tmp_path):
    src = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7), 'fc.weight': torch.zeros(1000, 2048)}, src)
    assert_refused(src, tmp_path / 'out.pth', 'not a FastViT checkpoint')


def test_refuses_missing_unknown_and_misshapen_keys(apple_t8, tmp_path):
    _, state = apple_t8
    missing = dict(state)
    del missing['network.2.1.convffn.fc2.weight']
    torch.save({'state_dict': missing}, tmp_path / 'missing.pth.tar')
    assert_refused(tmp_path / 'missing.pth.tar', tmp_path / 'out.pth',
                   r"1 missing: \['backbone.stages.1.blocks.1.mlp.fc2.weight'\]")

    unknown = dict(state, **{'network.0.0.extra.weight': torch.zeros(3)})
    torch.save({'state_dict': unknown}, tmp_path / 'unknown.pth.tar')
    assert_refused(tmp_path / 'unknown.pth.tar', tmp_path / 'out.pth', 'unexpected.*network|blocks.0.extra')

    foreign = dict(state, **{'dist_head.weight': torch.zeros(1000, 768)})
    torch.save({'state_dict': foreign}, tmp_path / 'foreign.pth.tar')
    assert_refused(tmp_path / 'foreign.pth.tar', tmp_path / 'out.pth', 'dist_head.weight')

    misshapen = dict(state, **{'network.0.0.convffn.fc1.bias': torch.zeros(7)})
    torch.save({'state_dict': misshapen}, tmp_path / 'shape.pth.tar')
    assert_refused(tmp_path / 'shape.pth.tar', tmp_path / 'out.pth', r'wrong shape.*fc1.bias: \(7,\)')


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_refuses_a_pickle_that_would_run_code(apple_t8, tmp_path):
    _, state = apple_t8
    marker = tmp_path / 'code_ran'
    src = tmp_path / 'evil.pth.tar'
    torch.save({'state_dict': state, 'payload': _RunsCode(str(marker))}, src)
    assert_refused(src, tmp_path / 'out.pth', 'weights_only=True')
    assert not marker.exists()


def test_command_line(apple_t8, tmp_path):
    path, _ = apple_t8
    out = tmp_path / 'ckpts' / 't8.pth'
    done = run_in_process(TOOL, path, out, cwd=REPO)  # main(argv), as in a new process
    assert done.returncode == 0, done.stderr
    assert 'apple_unfused checkpoint under "state_dict": FastViT-T8, 1000 classes' in done.stdout
    assert set(torch.load(out, weights_only=True)['state_dict']) == set(FastViTClassifier('t8').state_dict())

    # from the command line, as a user runs it: the exit status and the message
    bad = subprocess.run([sys.executable, TOOL, str(path), str(tmp_path / 'x.pth'), '--arch', 'ma36'],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 1
    assert 'not the requested FastViT-MA36' in bad.stderr and 'nothing was written' in bad.stderr
    assert not (tmp_path / 'x.pth').exists()

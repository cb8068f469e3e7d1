"""Models by name: the model index (model-index.yml, configs/metafiles/*.yml), mmfastvit.get_model / list_models,
mmpretrain's own get_model and ImageClassificationInferencer on our names, and the docs' figures against the index."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml
from helpers import num_params
from mmengine.config import Config
from weights_server import apple_relpath, apple_site_dir, apple_weights_mirror  # noqa: F401 (fixtures)

import mmfastvit
from mmfastvit.apis import model_index
from mmfastvit.apis.model_index import TASKS, get_model, get_model_info, list_models

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
import model_zoo  # noqa: E402

FASTVIT = ('t8', 't12', 's12', 'sa12', 'sa24', 'sa36', 'ma36')
FMVIT = ('t', 's', 'm', 'b', 'l')
SCOPE_OF_TASK = {'classification': 'mmpretrain', 'detection': 'mmdet', 'segmentation': 'mmseg'}
APPLE = 'https://docs-assets.developer.apple.com/ml-research/models/fastvit'


def variant_of(name):
    return re.search(r'(?:fastvit|fmvit)-([a-z0-9]+)', name).group(1)


def raw_entries():
    """The index's entries as the YAML files hold them, read without mmfastvit's parser."""
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    entries = []
    for rel in index['Import']:
        with open(osp.join(REPO, rel)) as f:
            entries += yaml.safe_load(f)['Models']
    return entries


def test_names_follow_the_documented_scheme():
    expected = ({f'fastvit-{v}_in1k' for v in FASTVIT} | {f'fastvit-{v}_in1k-distill' for v in FASTVIT}
                | {f'fastvit-{v}_in1k-384px' for v in FASTVIT} | {f'fmvit-{v}_in1k' for v in FMVIT}
                | {f'mask-rcnn_fastvit-{v}_fpn_1x_coco' for v in FASTVIT} | {'mask-rcnn_fmvit-b_fpn_1x_coco'}
                | {f'fpn_fastvit-{v}_8xb4-40k_ade20k-512x512' for v in FASTVIT}
                | {'fpn_fmvit-b_8xb4-40k_ade20k-512x512'})
    names = [e['Name'] for e in raw_entries()]
    assert len(names) == len(set(names))
    assert set(names) == expected
    assert list_models() == sorted(expected)


def test_every_entry_config_exists_and_loads_in_its_task_scope():
    for entry in raw_entries():
        info = get_model_info(entry['Name'])
        assert info.config == osp.join(REPO, entry['Config']) and osp.isfile(info.config), entry['Name']
        cfg = Config.fromfile(info.config)
        assert cfg.get('default_scope') == SCOPE_OF_TASK[info.task], entry['Name']
        assert cfg.model.backbone.type in ('mmfastvit.FastViT', 'mmfastvit.FMViT', 'FastViT', 'FMViT')
        variant = variant_of(entry['Name'])
        assert cfg.model.backbone.arch == variant, entry['Name']
        assert isinstance(info.metadata['Parameters'], int) and info.metadata['Training Data']
    with open(osp.join(REPO, 'model-index.yml')) as f:
        for rel in yaml.safe_load(f)['Import']:
            with open(osp.join(REPO, rel)) as g:
                for collection in yaml.safe_load(g)['Collections']:
                    assert osp.isfile(osp.join(REPO, collection['README'])), collection['Name']


def test_weights_are_apples_files_for_the_released_classifiers_only():
    for info in (get_model_info(n) for n in list_models()):
        variant = variant_of(info.name)
        if info.name == f'fastvit-{variant}_in1k':
            assert info.weights == f'{APPLE}/image_classification_models/fastvit_{variant}.pth.tar'
        elif info.name == f'fastvit-{variant}_in1k-distill':
            assert info.weights == f'{APPLE}/image_classification_distilled_models/fastvit_{variant}.pth.tar'
        else:
            assert info.weights is None, info.name


def test_list_models_filters_by_pattern_and_task():
    assert list_models('fastvit-sa12') == ['fastvit-sa12_in1k', 'fastvit-sa12_in1k-384px', 'fastvit-sa12_in1k-distill']
    assert list_models('FASTVIT-SA12_IN1K-D') == ['fastvit-sa12_in1k-distill']
    assert list_models('*-distill') == sorted(f'fastvit-{v}_in1k-distill' for v in FASTVIT)
    by_task = {task: list_models(task=task) for task in TASKS}
    assert sorted(sum(by_task.values(), [])) == list_models()
    assert by_task['detection'] == list_models('mask-rcnn')
    assert by_task['segmentation'] == list_models('fpn_')
    assert list_models('fmvit', task='classification') == [f'fmvit-{v}_in1k' for v in ('b', 'l', 'm', 's', 't')]
    assert list_models('nothing-like-this') == []
    with pytest.raises(ValueError, match=r'task "detect" is not one of \[\'classification\''):
        list_models(task='detect')


def test_unknown_name_errors_with_close_matches():
    with pytest.raises(ValueError, match=r'"fastvit-sa13_in1k" is not in .*close matches: \[.*fastvit-sa12_in1k'):
        get_model('fastvit-sa13_in1k')
    with pytest.raises(ValueError, match=r'close matches: .*mask-rcnn_fastvit-t8_fpn_1x_coco'):
        get_model('mask_rcnn_fastvit_t8')
    with pytest.raises(ValueError, match='no name is close'):
        get_model_info('resnet50')


def test_a_malformed_index_is_refused_naming_the_file_and_entry(tmp_path):
    good = dict(Name='a-b_in1k', **{'In Collection': 'C'}, Config='configs/fastvit_t8_in1k.py',
                Metadata=dict(Parameters=1), Results=[dict(Task='Image Classification', Dataset='ImageNet-1k')])
    cases = (
        ([{k: v for k, v in good.items() if k != 'Config'}], r"model \"a-b_in1k\" lacks \['Config'\]"),
        ([dict(good, **{'In Collection': 'D'})], r'"In Collection: D" is not among .*\[\'C\'\]'),
        ([dict(good, Results=[dict(Task='Pose Estimation')])], r'each result needs a Task among'),
        ([dict(good, Results=[dict(Task='Image Classification'), dict(Task='Semantic Segmentation')])],
         r'different packages'),
        ([good, dict(good, Name='A-B_in1k')], r'model name "a-b_in1k" is in both'),
    )
    for i, (models, message) in enumerate(cases):
        metafile = tmp_path / f'meta{i}.yml'
        metafile.write_text(yaml.safe_dump(dict(Collections=[dict(Name='C')], Models=models)))
        index = tmp_path / f'index{i}.yml'
        index.write_text(yaml.safe_dump(dict(Import=[metafile.name])))
        with pytest.raises(ValueError, match=message) as error:
            model_index._load_index(str(index))
        assert str(metafile) in str(error.value)
    with pytest.raises(FileNotFoundError, match='nowhere.yml'):
        model_index._load_index(str(tmp_path / 'nowhere.yml'))


def test_pretrained_true_without_released_weights_names_the_model():
    for name in ('fastvit-t8_in1k-384px', 'fmvit-t_in1k', 'mask-rcnn_fastvit-sa12_fpn_1x_coco'):
        with pytest.raises(ValueError, match=f'model "{name}" has no released weights'):
            get_model(name, pretrained=True)
    with pytest.raises(TypeError, match='pretrained must be'):
        get_model('fastvit-t8_in1k', pretrained=1.0)


@pytest.mark.parametrize('variant', FASTVIT)
def test_get_model_builds_each_fastvit_classifier_with_the_metafile_params(variant):
    name = f'fastvit-{variant}_in1k'
    model = get_model(name, device='cpu')
    assert type(model).__name__ == 'ImageClassifier' and model._config.model.backbone.arch == variant
    assert not model.training
    params = get_model_info(name).metadata['Parameters']
    assert num_params(model) == params
    # the distilled and 384 entries are the same classifier: their counts must agree with this one
    assert get_model_info(f'{name}-distill').metadata['Parameters'] == params
    assert get_model_info(f'{name}-384px').metadata['Parameters'] == params
    if variant == 't8':
        with torch.no_grad():
            logits = model(torch.randn(1, 3, 64, 64), mode='tensor')
        assert logits.shape == (1, 1000) and torch.isfinite(logits).all()
        # keyword arguments override the config's model
        small = get_model(name, device='cpu', head=dict(num_classes=10))
        assert small.head.fc.out_features == 10


def test_get_model_builds_distilled_fmvit_detector_and_segmentor_with_the_metafile_params():
    built = {}
    for name in ('fastvit-t8_in1k-distill', 'fmvit-t_in1k', 'mask-rcnn_fastvit-t8_fpn_1x_coco',
                 'fpn_fastvit-t8_8xb4-40k_ade20k-512x512'):
        built[name] = model = get_model(name, device='cpu')
        assert num_params(model) == get_model_info(name).metadata['Parameters'], name
        assert not model.training
    assert type(built['fastvit-t8_in1k-distill']).__name__ == 'HardDistillationClassifier'
    det = built['mask-rcnn_fastvit-t8_fpn_1x_coco']
    assert type(det).__name__ == 'MaskRCNN' and det.cfg.model.backbone.arch == 't8'
    seg = built['fpn_fastvit-t8_8xb4-40k_ade20k-512x512']
    assert type(seg).__name__ == 'EncoderDecoder'
    with torch.no_grad():
        out = seg(torch.randn(1, 3, 64, 64), mode='tensor')
    assert out.shape[:2] == (1, 150)


@pytest.mark.parametrize('name', ['mask-rcnn_fmvit-b_fpn_1x_coco', 'fpn_fmvit-b_8xb4-40k_ade20k-512x512'])
def test_get_model_builds_the_fmvit_dense_models_with_the_metafile_params(name):
    model = get_model(name, device='cpu')
    assert type(model.backbone).__name__ == 'FMViT'
    assert num_params(model) == get_model_info(name).metadata['Parameters']


@pytest.mark.parametrize('variant', FMVIT[1:])
def test_metafile_params_of_the_other_fmvit_classifiers_equal_built_counts(variant):
    name = f'fmvit-{variant}_in1k'
    assert num_params(get_model(name, device='cpu')) == get_model_info(name).metadata['Parameters']


def test_pretrained_path_loads_a_converted_checkpoint(tmp_path):
    from weights_server import write_apple_file

    from mmfastvit.convert.checkpoint import fastvit_to_mmfastvit
    src = write_apple_file(tmp_path, 't8')
    dst = str(tmp_path / 'fastvit_t8_in1k.pth')
    result = fastvit_to_mmfastvit(src, dst)
    model = get_model('fastvit-t8_in1k', pretrained=dst, device='cpu')
    state = model.state_dict()
    for key, value in result.state_dict.items():
        assert torch.equal(state[key], value), key


def test_pretrained_true_loads_apples_files_through_the_url_loader(apple_weights_mirror, apple_site_dir, tmp_path):
    import mmpretrain

    import mmfastvit.integrations.mmpretrain  # noqa: F401
    from mmfastvit.convert.checkpoint import fastvit_to_mmfastvit
    for name, distilled in (('fastvit-t8_in1k', False), ('fastvit-t8_in1k-distill', True)):
        expected = fastvit_to_mmfastvit(str(apple_site_dir / apple_relpath('t8', distilled))).state_dict
        for build in (get_model, mmpretrain.get_model):
            state = build(name, pretrained=True, device='cpu').state_dict()
            assert all(torch.equal(state[key], value) for key, value in expected.items()), (name, build)
        assert '/' + apple_relpath('t8', distilled) in apple_weights_mirror.requests
    # each file was downloaded once: the second build read the converted cache
    assert len(apple_weights_mirror.requests) == 2


def test_mmpretrain_get_model_and_inferencer_resolve_our_names(tmp_path):
    """In a fresh interpreter, as a user starts: the lazy APIs import no task package; registering with mmpretrain
    before it reads its own index keeps both, a second registration is a no-op, and mmpretrain's get_model and
    ImageClassificationInferencer build and run ``fastvit-t8_in1k`` by name."""
    image = str(tmp_path / 'img.jpg')
    assert cv2.imwrite(image, np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    script = r'''
import json, sys
import mmfastvit
names = mmfastvit.list_models()
heavy = sorted({'mmpretrain', 'mmdet', 'mmseg', 'mmcv'} & set(sys.modules))
import mmfastvit.integrations.mmpretrain
from mmfastvit.apis import register_with_mmpretrain
register_with_mmpretrain()
import mmpretrain
from mmpretrain import ImageClassificationInferencer
listed = mmpretrain.list_models()
model = mmpretrain.get_model('fastvit-t8_in1k', pretrained=False)
inferencer = ImageClassificationInferencer('fastvit-t8_in1k', pretrained=False, device='cpu')
result = inferencer(sys.argv[1])[0]
# on a line of its own: the Inferencer's progress bar may leave the line it draws on unterminated
print('\nRESULT ' + json.dumps(dict(
    names=names, heavy=heavy, ours=[n for n in listed if n in names], theirs=len([n for n in listed if n not in names]),
    resnet='resnet50_8xb32_in1k' in listed, backbone=type(model.backbone).__name__,
    params=sum(p.numel() for p in model.parameters()),
    inferencer_lists=ImageClassificationInferencer.list_models('fastvit-t8'),
    scores=len(result['pred_scores']), label=int(result['pred_label']))))
'''
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, '-c', script, image], capture_output=True, text=True, cwd=str(tmp_path),
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    marked = [line for line in result.stdout.splitlines() if line.startswith('RESULT ')]
    assert len(marked) == 1, result.stdout[-3000:]
    out = json.loads(marked[0][len('RESULT '):])
    assert out['heavy'] == []
    assert sorted(out['ours']) == sorted(out['names']) == list_models()
    assert out['resnet'] and out['theirs'] > 100
    assert out['backbone'] == 'FastViT'
    assert out['params'] == get_model_info('fastvit-t8_in1k').metadata['Parameters']
    assert 'fastvit-t8_in1k' in out['inferencer_lists']
    assert out['scores'] == 1000 and 0 <= out['label'] < 1000


def test_lazy_attributes_of_the_package():
    assert mmfastvit.get_model is model_index.get_model and mmfastvit.list_models is model_index.list_models
    assert mmfastvit.get_model_info is model_index.get_model_info
    with pytest.raises(AttributeError, match='no attribute'):
        mmfastvit.no_such_api


def test_docs_tables_agree_with_the_metafiles():
    problems, compared = model_zoo.check()
    assert problems == []
    # README zoo (7 rows x params, GFLOPs, top-1, distilled), its det (4 x 2) and seg (4) tables, and the docs' tables
    assert compared >= 7 * 4 + 4 * 2 + 4


def test_docs_check_catches_a_changed_figure(tmp_path):
    with open(osp.join(REPO, 'README.md')) as f:
        text = f.read()
    models = model_index.model_infos()
    for old, new in (('| 80.9 | 81.9 |', '| 80.8 | 81.9 |'), ('4,026,232', '4,026,233'),
                     ('| 45.1 | 40.5 |', '| 45.1 | 40.6 |'), ('| 0.70 (0.7) |', '| 0.71 (0.7) |')):
        assert text.count(old) == 1, old
        path = tmp_path / 'README.md'
        path.write_text(text.replace(old, new))
        problems, _ = model_zoo.check_doc(str(path), models)
        assert len(problems) == 1, (old, problems)


def test_model_index_ships_with_a_non_editable_build(tmp_path):
    """setup.py's build_py copies the index and the configs into mmfastvit/.mim/, where model_index_path looks first."""
    result = subprocess.run([sys.executable, 'setup.py', '-q', 'build_py', '--build-lib', str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    index = tmp_path / 'mmfastvit' / '.mim' / 'model-index.yml'
    shipped = model_index._load_index(str(index))
    assert sorted(shipped) == list_models()
    assert all(osp.isfile(info.config) and str(tmp_path) in info.config for info in shipped.values())
    assert osp.isfile(tmp_path / 'mmfastvit' / '.mim' / 'configs' / '_base_' / 'default_runtime.py')

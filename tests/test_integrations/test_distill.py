"""HardDistillationClassifier: the DeiT hard-distillation loss, a teacher kept out of the student's state dict,
optimizer and train mode, clear errors for a missing teacher, and a student that predicts without one."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope

from mmfastvit.fileio import CheckpointError
from mmfastvit.integrations.distill import HardDistillationClassifier, build_teacher, load_teacher_state_dict

CONFIG_DIR = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', 'configs'))
NUM_CLASSES = 10


def tiny_classifier(embed_dims=(8, 16, 32, 64), num_classes=NUM_CLASSES, **kwargs):
    """A 4-block FastViT (RepMixer stages, attention in the last) with a linear head: fast on 64x64 inputs."""
    arch = dict(layers=(1, 1, 1, 1), embed_dims=embed_dims, mlp_ratios=2,
                token_mixers=('repmixer',) * 3 + ('attention',), pos_embs=(False, False, False, True))
    return dict(
        type='ImageClassifier',
        backbone=dict(type='mmfastvit.FastViT', arch=arch, out_indices=(4,)),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=2 * embed_dims[-1],
                  loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
        **kwargs)


TEACHER_MODEL = tiny_classifier(embed_dims=(8, 16, 32, 32))


def build(cfg):
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    return MODELS.build(copy.deepcopy(cfg))


@pytest.fixture
def teacher_files(tmp_path):
    """A teacher config file and its weights saved as a plain state dict; returns (spec, reference teacher)."""
    config = tmp_path / 'teacher.py'
    config.write_text(f"default_scope = 'mmpretrain'\nmodel = {TEACHER_MODEL!r}\n")
    torch.manual_seed(1)
    teacher = build(TEACHER_MODEL)
    with torch.no_grad():  # give the BatchNorms statistics, so that eval mode differs from train mode
        for module in teacher.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    checkpoint = tmp_path / 'teacher.pth'
    torch.save(teacher.state_dict(), checkpoint)
    return dict(config=str(config), checkpoint=str(checkpoint)), teacher.eval()


def student(teacher, **kwargs):
    torch.manual_seed(0)
    return build(tiny_classifier(teacher=teacher, **kwargs) | dict(type='mmfastvit.HardDistillationClassifier'))


def soft_targets(labels, other, mix=0.7):
    """Mixup-like targets: ``mix`` of one class, the rest of another."""
    from mmpretrain.structures import DataSample
    scores = mix * F.one_hot(labels, NUM_CLASSES).float() + (1 - mix) * F.one_hot(other, NUM_CLASSES).float()
    return [DataSample().set_gt_score(score) for score in scores]


def test_registered_in_mmfastvit_scope_and_reachable_from_mmpretrain():
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

    from mmfastvit.registry import MODELS
    assert MODELS.get('HardDistillationClassifier') is HardDistillationClassifier
    assert MMPRETRAIN_MODELS.get('mmfastvit.HardDistillationClassifier') is HardDistillationClassifier


@pytest.mark.parametrize('distill_weight', [0.5, 0.3])
def test_loss_is_weighted_head_loss_plus_ce_to_teacher_argmax(teacher_files, distill_weight):
    spec, reference_teacher = teacher_files
    model = student(spec, distill_weight=distill_weight).train()
    inputs = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        teacher_label = reference_teacher(inputs, mode='tensor').argmax(1)
    labels = (teacher_label + 1) % NUM_CLASSES  # the ground truth differs from the teacher's choice
    data_samples = soft_targets(labels, (labels + 3) % NUM_CLASSES)

    losses = model.loss(inputs, data_samples)
    assert set(losses) == {'loss_cls', 'loss_distill'}

    logits = model(inputs, mode='tensor')  # train mode, no drop path: the same logits loss() saw
    targets = torch.stack([sample.gt_score for sample in data_samples])
    smoothed = targets * (1 - 0.1) + 0.1 / NUM_CLASSES
    head_loss = -(smoothed * logits.log_softmax(1)).sum(1).mean()
    distill_loss = F.cross_entropy(logits, teacher_label)
    assert not torch.allclose(distill_loss, F.cross_entropy(logits, labels))  # the check below can tell them apart
    torch.testing.assert_close(losses['loss_cls'], (1 - distill_weight) * head_loss)
    torch.testing.assert_close(losses['loss_distill'], distill_weight * distill_loss)

    sum(losses.values()).backward()
    assert model.backbone.stem[0].conv_kxk[0].conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())


def test_teacher_sees_the_student_batch_after_mixup(teacher_files):
    """Through train_step (data preprocessor with Mixup / CutMix), teacher and student get the same tensor."""
    from mmengine.optim import OptimWrapper
    spec, _ = teacher_files
    model = student(spec, data_preprocessor=dict(num_classes=NUM_CLASSES, mean=[127.5] * 3, std=[64.0] * 3),
                    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
    seen = {}
    model.backbone.register_forward_pre_hook(lambda module, args: seen.__setitem__('student', args[0]))
    model.build_teacher().backbone.register_forward_pre_hook(lambda module, args: seen.__setitem__('teacher', args[0]))
    from mmpretrain.structures import DataSample
    data = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(4)],
                data_samples=[DataSample().set_gt_label(i) for i in range(4)])
    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    log_vars = model.train_step(data, optim_wrapper)
    assert {'loss', 'loss_cls', 'loss_distill'} <= set(log_vars)
    assert torch.equal(seen['student'], seen['teacher'])
    assert seen['student'].dtype == torch.float32  # normalized and mixed, not the raw uint8 batch


def test_teacher_outside_state_dict_optimizer_and_train_mode(teacher_files):
    from mmengine.optim import build_optim_wrapper
    spec, _ = teacher_files
    model = student(spec)
    plain_keys = set(build(tiny_classifier()).state_dict())
    assert model.teacher is None  # nothing built or read at construction
    teacher = model.build_teacher()
    assert model.build_teacher() is teacher

    assert set(model.state_dict()) == plain_keys  # the plain classifier's checkpoint layout
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert teacher_ids and not teacher_ids & {id(p) for p in model.parameters()}
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, custom_keys={'.gamma': dict(decay_mult=0.0)})))
    optimized = {id(p) for group in wrapper.optimizer.param_groups for p in group['params']}
    assert optimized == {id(p) for p in model.parameters()} and not optimized & teacher_ids

    model.train()
    assert model.training and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    model.loss(torch.randn(2, 3, 64, 64), soft_targets(torch.tensor([0, 1]), torch.tensor([2, 3])))
    assert not teacher.training
    assert copy.deepcopy(model).teacher is teacher  # an EMA copy of the student shares the teacher


def test_teacher_weights_come_from_the_checkpoint(teacher_files):
    spec, reference = teacher_files
    teacher = build_teacher(spec)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(teacher.state_dict()[key], value, msg=key)


def test_missing_teacher_files_give_clear_errors(teacher_files, tmp_path):
    spec, _ = teacher_files
    inputs, targets = torch.randn(2, 3, 64, 64), soft_targets(torch.tensor([0, 1]), torch.tensor([2, 3]))
    missing = str(tmp_path / 'nowhere' / 'regnety_160.pth')
    with pytest.raises(FileNotFoundError, match=f'teacher checkpoint "{missing}" does not exist; expected a state '
                                                'dict of the teacher'):
        student(dict(spec, checkpoint=missing)).loss(inputs, targets)
    missing_config = str(tmp_path / 'nowhere' / 'teacher.py')
    with pytest.raises(FileNotFoundError, match=f'teacher config "{missing_config}" does not exist; expected a '
                                                'config file whose `model` is the teacher'):
        student(dict(spec, config=missing_config)).loss(inputs, targets)


def test_student_predicts_without_any_teacher_file(tmp_path):
    model = student(dict(config=str(tmp_path / 'absent.py'), checkpoint=str(tmp_path / 'absent.pth'))).eval()
    with torch.no_grad():
        predictions = model(torch.randn(2, 3, 64, 64), mode='predict')
        logits = model(torch.randn(2, 3, 64, 64), mode='tensor')
    assert [p.pred_score.shape for p in predictions] == [(NUM_CLASSES,)] * 2
    assert logits.shape == (2, NUM_CLASSES)
    assert model.teacher is None


@pytest.mark.parametrize('wrap', ['bare', 'state_dict', 'model', 'ddp'])
def test_checkpoint_layouts(teacher_files, tmp_path, wrap):
    spec, reference = teacher_files
    state_dict = reference.state_dict()
    saved = {'bare': state_dict, 'state_dict': {'state_dict': state_dict, 'meta': {'epoch': 3}},
             'model': {'model': state_dict, 'epoch': 3},
             'ddp': {f'module.{key}': value for key, value in state_dict.items()}}[wrap]
    path = tmp_path / f'{wrap}.pth'
    torch.save(saved, path)
    loaded = load_teacher_state_dict(str(path))
    assert loaded.keys() == state_dict.keys()
    assert all(torch.equal(loaded[key], state_dict[key]) for key in state_dict)


class _NotWeights:
    """A class torch's weights_only unpickler does not know."""


def test_checkpoints_that_are_not_plain_weights_are_refused(teacher_files, tmp_path):
    spec, reference = teacher_files
    pickled = tmp_path / 'full.pth'
    # a run's Namespace and mmengine's message hub load (mmfastvit.fileio); an object of any other class does not
    torch.save({'state_dict': reference.state_dict(), 'extra': _NotWeights()}, pickled)
    with pytest.raises(CheckpointError, match='teacher checkpoint: .*weights_only=True'):
        load_teacher_state_dict(str(pickled))
    not_weights = tmp_path / 'list.pth'
    torch.save([torch.zeros(1)], not_weights)
    with pytest.raises(CheckpointError, match='holds no state dict: expected a dict of tensors'):
        load_teacher_state_dict(str(not_weights))
    wrong_model = tmp_path / 'other.pth'
    torch.save(build(tiny_classifier()).state_dict(), wrong_model)  # a different architecture
    with pytest.raises(RuntimeError, match='does not fit the teacher ImageClassifier'):
        build_teacher(dict(spec, checkpoint=str(wrong_model)))
    partial = tmp_path / 'partial.pth'
    torch.save({k: v for k, v in reference.state_dict().items() if not k.startswith('head.')}, partial)
    with pytest.raises(RuntimeError, match=r"2 missing keys \['head.fc.weight', 'head.fc.bias'\]"):
        build_teacher(dict(spec, checkpoint=str(partial)))


def test_inline_teacher_model(teacher_files):
    spec, reference = teacher_files
    teacher = build_teacher(dict(model=TEACHER_MODEL, checkpoint=spec['checkpoint']))
    inputs = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(teacher(inputs, mode='tensor'), reference(inputs, mode='tensor'))


@pytest.mark.parametrize('teacher, message', [
    (dict(checkpoint='t.pth'), 'exactly one of "config"'),
    (dict(config='t.py', model=dict(type='ImageClassifier'), checkpoint='t.pth'), 'exactly one of "config"'),
    (dict(config='t.py'), 'teacher needs "checkpoint"'),
    (dict(config='t.py', checkpoint='t.pth', ckpt='x'), r"teacher keys \['ckpt'\] are not among"),
])
def test_invalid_teacher_spec(teacher, message):
    with pytest.raises(ValueError, match=message):
        student(teacher)


def test_invalid_distill_weight():
    with pytest.raises(ValueError, match=r'distill_weight=1.5 is not in \[0, 1\]'):
        student(dict(config='t.py', checkpoint='t.pth'), distill_weight=1.5)


def test_default_teacher_loads_deits_regnety_160_release_layout(tmp_path):
    """DeiT's regnety_160-a5fe301d.pth is timm's ``regnety_160`` state dict under 'model': it loads into the default
    teacher config (mmpretrain's TimmClassifier) and reproduces timm's logits."""
    import timm
    torch.manual_seed(0)
    timm_model = timm.create_model('regnety_160').eval()
    checkpoint = tmp_path / 'regnety_160-a5fe301d.pth'
    torch.save({'model': timm_model.state_dict()}, checkpoint)
    teacher = build_teacher(dict(config=osp.join(CONFIG_DIR, '_base_', 'models', 'regnety_16gf_teacher.py'),
                                 checkpoint=str(checkpoint)))
    assert type(teacher).__name__ == 'TimmClassifier' and not teacher.training
    inputs = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(teacher(inputs, mode='tensor'), timm_model(inputs))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_teacher_follows_the_inputs_to_the_gpu(teacher_files):
    spec, _ = teacher_files
    model = student(spec).cuda().train()
    losses = model.loss(torch.randn(2, 3, 64, 64, device='cuda'),
                        [s.to('cuda') for s in soft_targets(torch.tensor([0, 1]), torch.tensor([2, 3]))])
    assert next(model.teacher.parameters()).is_cuda and losses['loss_distill'].is_cuda
    assert {k for k in model.state_dict()} == set(build(tiny_classifier()).state_dict())

"""benchmarks/bench.py: one entry point whose subcommands share their options, and whose committed results name the
command that reproduces them with the settings they record."""
import json
import os.path as osp
import re
import shlex
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(osp.dirname(__file__)).parent.parent / 'benchmarks'
sys.path.insert(0, str(BENCHMARKS))
import bench  # noqa: E402
from suites import common  # noqa: E402
from suites.common import timing_for  # noqa: E402

RESULTS = BENCHMARKS / 'results'
# what the old scripts called the shared options (profile's --iters is --runs now; seg's --iters are training
# iterations, another thing)
OLD_NAMES = ('--wait-timeout', '--wait-load', '--wait-max', '--out-dir', '--warmup-b8', '--runs-b8', '--warmup-b32',
             '--runs-b32')


def _subparsers(parser, prefix=()):
    """(path, parser) of every leaf subcommand: ('eager',), ..., ('learning', 'det'), ..."""
    actions = [a for a in parser._actions if a.__class__.__name__ == '_SubParsersAction']
    if not actions:
        yield prefix, parser
        return
    for name, sub in actions[0].choices.items():
        yield from _subparsers(sub, prefix + (name,))


def _options(parser):
    return {opt: action for action in parser._actions for opt in action.option_strings}


def test_every_subcommand_shares_the_options_and_their_defaults():
    leaves = dict(_subparsers(bench.build_parser()))
    assert set(leaves) == {('eager',), ('deploy',), ('dense',), ('train-step',), ('learning', 'det'),
                           ('learning', 'seg'), ('learning', 'hand'), ('learning', 'cls'), ('hand',),
                           ('profile',), ('fusion-precision',), ('precision',), ('precision-accuracy',)}
    for path, parser in leaves.items():
        options = _options(parser)
        assert {'--threads', '--seed', '--out'} <= set(options), path
        assert options['--threads'].default == common.DEFAULT_THREADS, path
        assert not set(OLD_NAMES) & set(options), (path, set(OLD_NAMES) & set(options))
        if '--max-load' in options:
            assert options['--max-load'].default is None and options['--max-wait'].default == 900, path
        assert ('--max-load' in options) == ('--max-wait' in options), path
        assert ('--warmup' in options) == ('--runs' in options), path
        assert ('--warmup-big' in options) == ('--runs-big' in options), path


@pytest.mark.parametrize('argv, message', [
    (['eager', '--runs', '0'], '--runs must be >= 1, got 0'),
    (['dense', '--threads', '0'], '--threads must be >= 1, got 0'),
    (['hand', '--batches', '1', '0'], '--batches must be >= 1, got [1, 0]'),
    (['deploy', '--fmvit', 't'], '--fmvit t goes with --against fmvit'),
    (['learning', 'det', '--epochs', '1'], '--epochs must be >= 2'),
    (['learning', 'seg', '--iters', '10', '--val-interval', '20'], '--val-interval must be <= --iters (10), got 20'),
    (['profile', '--iters', '3'], 'unrecognized arguments: --iters 3'),
])
def test_bad_options_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_command_and_result_files(tmp_path):
    assert common.command_line(['eager', '--variants', 't8', '--out', 'a b']) == \
        ".venv/bin/python benchmarks/bench.py eager --variants t8 --out 'a b'"
    assert common.reproduce('x y') == 'Reproduce: `x y`'
    paths = common.write_results(tmp_path / 'run', dict(settings=dict(path=tmp_path)), '# table\n')
    assert paths == (tmp_path / 'run.json', tmp_path / 'run.md')
    assert json.loads(paths[0].read_text()) == dict(settings=dict(path=str(tmp_path)))
    assert paths[1].read_text() == '# table\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['run.json', 'run.md']


def test_memory_is_measured_in_a_child_process():
    from mmfastvit.models import FastViT
    options = ['--batch', 1, '--size', 32, '--seed', 0, '--threads', 1]
    measured = common.memory_in_child('dense', 'fastvit_t8/deploy', options)
    assert measured['params'] == common.num_params(FastViT('t8', deploy=True)) and measured['peak_mib'] >= 0
    with pytest.raises(SystemExit, match='memory measurement of fastvit_t8/nonsense failed'):
        common.memory_in_child('dense', 'fastvit_t8/nonsense', options)


# -- the committed results -------------------------------------------------------------------------------------------

def _commands(text):
    return re.findall(r'Reproduce: `([^`]+)`', text) + re.findall(r'On a machine that has them: `([^`]+)`', text)


def _parse(command):
    """The options ``command`` (a bench.py command line) runs with, after the subcommand's own checks."""
    words = shlex.split(command)
    assert words[1] == 'benchmarks/bench.py', command
    args = bench.build_parser().parse_args(words[2:])
    args._validate(args._parser, args)
    return args


def _json(name):
    return json.loads((RESULTS / name).read_text())


def test_every_committed_result_names_a_command_that_parses():
    seen = 0
    for path in sorted(RESULTS.glob('*.md')):
        commands = _commands(path.read_text())
        assert commands, f'{path.name} names no command'
        for command in commands:
            if 'get_flops.py' in command:
                continue
            _parse(command)
            seen += 1
    for path in sorted(RESULTS.glob('*.json')):
        doc = json.loads(path.read_text())
        command = doc.get('command') or doc.get('settings', {}).get('command')
        assert command and command in (RESULTS / path.name.replace('.json', '.md')).read_text(), path.name
        _parse(command)
    assert seen >= 14


def _same(recorded: dict, args, *names):
    for name in names:
        assert recorded[name] == getattr(args, name), name


def test_committed_commands_carry_the_recorded_settings():
    s = _json('backbone_latency_cpu_intel-xeon.json')['settings']
    args = _parse(s['command'])
    _same(s, args, 'batch', 'size', 'warmup', 'runs', 'threads', 'seed')

    s = _json('dense_backbone_latency_cpu_intel-xeon.json')['settings']
    args = _parse(s['command'])
    _same(s, args, 'variants', 'baselines', 'batch', 'size', 'warmup', 'runs', 'seed')
    assert s['machine']['torch_threads'] == args.threads and (s['waited'] is None) == (args.max_load is None)

    for batch in (1, 8):
        s = _json(f'deploy_latency_cpu_intel-xeon_b{batch}.json')['settings']
        args = _parse(s['command'])
        assert args.against == 'timm' and batch in args.batches
        assert (s['warmup'], s['runs']) == timing_for(args, batch)
        _same(s, args, 'threads', 'max_load', 'retry_above', 'retries')

    doc = _json('fmvit_fastvit_latency_cpu_intel-xeon.json')
    args = _parse(doc['command'])
    assert args.against == 'fmvit' and [int(b) for b in doc['reports']] == args.batches
    for batch, report in doc['reports'].items():
        s = report['settings']
        assert (s['warmup'], s['runs']) == timing_for(args, int(batch))
        _same(s, args, 'threads', 'max_load', 'max_wait', 'retries')
        names = {res['source']['variant'] for res in report['results'].values()}
        assert names == set(args.variants) | {f'fmvit_{v}' for v in args.fmvit}

    s = _json('det_train_step_cpu_intel-xeon.json')['settings']
    _same(s, _parse(s['command']), 'batch', 'size', 'warmup', 'runs', 'threads', 'seed')

    s = _json('det_learning_check.json')['settings']
    args = _parse(s['command'])
    _same(s, args, 'train_images', 'val_images', 'size', 'max_objects', 'crowd_prob', 'batch', 'epochs', 'lr',
          'warmup_iters', 'rois', 'target', 'seed')
    assert s['machine']['torch_threads'] == args.threads

    s = _json('seg_learning_check.json')['settings']
    _same(s, _parse(s['command']), 'iters', 'val_interval', 'target', 'batch', 'crop', 'num_train', 'num_val', 'size',
          'seed', 'threads')

    doc = _json('cls_learning_check.json')
    s = doc['settings']
    args = _parse(s['command'])
    _same(s, args, 'num_classes', 'train_per_class', 'val_per_class', 'size', 'batch', 'epochs', 'warmup_epochs',
          'val_interval', 'lr', 'ema_momentum', 'log_interval', 'target', 'seed', 'threads')
    assert doc['artifacts']['input_size'] == args.size and doc['artifacts']['num_classes'] == args.num_classes

    s = _json('hand_learning_check.json')['settings']
    _same(s, _parse(s['command']), 'num_train', 'num_eval', 'size', 'batch', 'epochs', 'val_interval', 'lr',
          'no_rotation', 'target', 'log_interval', 'seed', 'threads')

    doc = _json('hand_throughput_cpu_intel-xeon.json')
    s = doc['settings']
    args = _parse(s['command'])
    _same(s, args, 'device', 'variants', 'baselines', 'batches', 'seed', 'max_load')
    assert s['machine']['torch_threads'] == args.threads
    for batch in args.batches:
        recorded = doc['results']['batches'][str(batch)]
        assert (recorded['warmup'], recorded['runs']) == timing_for(args, batch)

    doc = _json('ort_profile_cpu_intel-xeon.json')
    args = _parse(doc['command'])
    assert (doc['batch'], doc['iters'], doc['threads']) == (args.batch, args.runs, args.threads)
    assert list(doc['variants']) == args.variants and args.max_load is not None


def _recorded_cpus(doc):
    """Every CPU model a result's JSON records (``"cpu": "..."`` at any depth)."""
    if isinstance(doc, dict):
        found = {doc['cpu']} if isinstance(doc.get('cpu'), str) else set()
        return found.union(*(_recorded_cpus(v) for v in doc.values()))
    if isinstance(doc, list):
        return set().union(*(_recorded_cpus(v) for v in doc))
    return set()


def test_cpu_results_are_named_after_the_cpu_that_timed_them():
    from mmfastvit.deploy.latency import cpu_tag
    named = 0
    for path in sorted(RESULTS.glob('*_cpu_*.json')):
        tag = re.fullmatch(r'.+_cpu_([a-z0-9-]+?)(_b\d+)?\.json', path.name).group(1)
        cpus = _recorded_cpus(json.loads(path.read_text()))
        assert len(cpus) == 1 and cpu_tag(cpus.pop()) == tag, (path.name, cpus)
        named += 1
    assert named >= 8
    assert not list(RESULTS.glob('*_cpu.*')) and not list(RESULTS.glob('*_cpu_b[0-9]*')), 'a CPU result without a tag'
    for options in ('eager', 'dense', 'train-step', 'profile', 'hand', 'deploy', 'deploy --against fmvit', 'precision',
                    'precision-accuracy'):
        out = _parse(f'.venv/bin/python benchmarks/bench.py {options}').out
        assert out.parent == common.RESULTS and out.name.endswith(f'_cpu_{cpu_tag()}'), (options, out)
    for against in ('timm', 'fmvit'):
        out = _parse(f'.venv/bin/python benchmarks/bench.py deploy --device cuda --against {against}').out
        assert out.name.endswith('_cuda'), out

"""tools/{dist,slurm}_{train,test}.sh hand their arguments to tools/launch.sh, which starts the tool with mmengine's
matching --launcher: checked with the interpreter (PYTHON) and srun replaced by programs that print their arguments."""
import os
import os.path as osp
import subprocess

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO, 'tools')


def launch(script, *args, tmp_path, **env):
    fake = tmp_path / 'bin'
    fake.mkdir(exist_ok=True)
    (fake / 'srun').write_text('#!/bin/sh\necho srun "$@"\n')
    (fake / 'srun').chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k not in ('NNODES', 'NODE_RANK', 'PORT', 'MASTER_ADDR', 'GPUS',
                                                                 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS')}
    environ.update(PATH=f'{fake}{os.pathsep}{os.environ["PATH"]}', PYTHON='echo', **env)
    return subprocess.run([osp.join(TOOLS, script), *args], env=environ, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize('script,args,tool,rest', [
    ('dist_train.sh', ['a.py', '4', '--amp'], 'train.py', ['a.py', '--amp']),
    ('dist_test.sh', ['a.py', 'w.pth', '2', '--tta'], 'test.py', ['a.py', 'w.pth', '--tta']),
])
def test_torchrun_scripts(tmp_path, script, args, tool, rest):
    result = launch(script, *args, tmp_path=tmp_path, NNODES='2', PORT='29600')
    assert result.returncode == 0, result.stderr
    gpus = args[1] if tool == 'train.py' else args[2]
    assert result.stdout.split() == [
        '-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=0', '--master_addr=127.0.0.1', '--master_port=29600',
        f'--nproc_per_node={gpus}', osp.join(TOOLS, tool), '--launcher', 'pytorch', *rest]


@pytest.mark.parametrize('script,args,tool,rest', [
    ('slurm_train.sh', ['part', 'job', 'a.py', '--amp'], 'train.py', ['a.py', '--amp']),
    ('slurm_test.sh', ['part', 'job', 'a.py', 'w.pth', '--out', 'r.pkl'], 'test.py',
     ['a.py', 'w.pth', '--out', 'r.pkl']),
])
def test_slurm_scripts(tmp_path, script, args, tool, rest):
    result = launch(script, *args, tmp_path=tmp_path, GPUS='16', SRUN_ARGS='--qos=high --time=60')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        'srun', '-p', 'part', '--job-name=job', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
        '--cpus-per-task=5', '--kill-on-bad-exit=1', '--qos=high', '--time=60', 'echo', '-u', osp.join(TOOLS, tool),
        '--launcher', 'slurm', *rest]


@pytest.mark.parametrize('script,args', [('dist_train.sh', ['a.py']), ('dist_test.sh', ['a.py', 'w.pth']),
                                         ('slurm_train.sh', ['part', 'job']), ('slurm_test.sh', ['p', 'j', 'a.py']),
                                         ('launch.sh', ['mpirun', '2', 'train.py'])])
def test_too_few_arguments_print_the_usage_and_exit_2(tmp_path, script, args):
    result = launch(script, *args, tmp_path=tmp_path)
    assert result.returncode == 2 and result.stdout == ''
    assert result.stderr.startswith(f'usage: {osp.join(TOOLS, script)} ')

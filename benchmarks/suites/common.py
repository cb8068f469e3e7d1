"""What every benchmark shares: the shared options, the wait for a quiet machine, peak memory in a fresh process,
markdown rows, the command that reproduces a run, and the result files.

The shared options mean the same in every subcommand that has them: ``--threads`` (CPU threads; default torch's,
the machine's cores), ``--warmup`` / ``--runs`` (untimed and timed rounds; ``--warmup-big`` / ``--runs-big`` at
batch > 1), ``--max-load`` / ``--max-wait`` (wait, at most ``--max-wait`` seconds, for the 1-minute load average to
drop below ``--max-load``; no wait without it), ``--seed`` and ``--out`` (the results' path without its suffixes).
"""
import argparse
import contextlib
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from mmfastvit.deploy.latency import (cpu_tag, load_average, peak_extra_memory, time_interleaved, wait_for_load,
                                      write_text_atomic)

BENCHMARKS = Path(__file__).resolve().parent.parent
REPO = BENCHMARKS.parent
RESULTS = BENCHMARKS / 'results'
ENTRY = BENCHMARKS / 'bench.py'
# how a run started in-process (``bench.main(argv)``) is written in its "Reproduce" line
ENTRY_COMMAND = '.venv/bin/python benchmarks/bench.py'
DEFAULT_THREADS = torch.get_num_threads()  # torch's default: the machine's cores, or OMP_NUM_THREADS
DEFAULT_MAX_WAIT = 900.0
# A memory child returns every allocation of 64 KiB or more to the OS when it is freed, so the resident baseline read
# after a forward (or a step) does not keep its activations and the high-water mark shows that call's own peak.
MEMORY_CHILD_ENV = {'MALLOC_MMAP_THRESHOLD_': '65536'}
MEMORY_CHILD_FLAG = '--_memory-child'


# ---------------------------------------------------------------------------------------------------------------------
# options

def add_subcommand(subparsers, name: str, doc: str, main: Callable[[argparse.Namespace], Optional[int]],
                   validate: Optional[Callable[[argparse.ArgumentParser, argparse.Namespace], None]] = None
                   ) -> argparse.ArgumentParser:
    """Adds subcommand ``name`` (its ``--help``: the module docstring ``doc``); ``bench.main`` checks the parsed
    options with ``validate(parser, args)``, then runs ``main(args)``."""
    parser = subparsers.add_parser(name, help=doc.split('\n\n')[0], description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(_main=main, _validate=validate, _parser=parser)
    return parser


def add_threads_option(parser: argparse.ArgumentParser, what: str = 'torch.set_num_threads') -> None:
    parser.add_argument('--threads', type=int, default=DEFAULT_THREADS,
                        help=f'CPU threads ({what}). Default: torch\'s, the machine\'s cores ({DEFAULT_THREADS} here)')


def add_timing_options(parser: argparse.ArgumentParser, warmup: int, runs: int, unit: str = 'runs per candidate',
                       big: bool = False) -> None:
    """``--warmup`` and ``--runs``; with ``big``, ``--warmup-big`` / ``--runs-big`` for batches above 1."""
    parser.add_argument('--warmup', type=int, default=warmup, help=f'untimed {unit}. Default: {warmup}')
    parser.add_argument('--runs', type=int, default=runs, help=f'timed {unit}. Default: {runs}')
    if big:
        parser.add_argument('--warmup-big', type=int, help='--warmup at batch > 1. Default: --warmup')
        parser.add_argument('--runs-big', type=int, help='--runs at batch > 1. Default: --runs')


def timing_for(args: argparse.Namespace, batch: int) -> Tuple[int, int]:
    """(warm-up, timed runs) at ``batch``: ``--warmup-big`` / ``--runs-big`` above batch 1 where given."""
    big = batch > 1
    warmup = args.warmup_big if big and args.warmup_big is not None else args.warmup
    runs = args.runs_big if big and args.runs_big is not None else args.runs
    return warmup, runs


def add_load_options(parser: argparse.ArgumentParser, when: str = 'before timing') -> None:
    parser.add_argument('--max-load', type=float,
                        help=f'{when}, wait until the 1-minute load average is below this (a shared machine). '
                             'Default: no wait')
    parser.add_argument('--max-wait', type=float, default=DEFAULT_MAX_WAIT,
                        help=f'longest wait for --max-load, seconds. Default: {DEFAULT_MAX_WAIT:.0f}')


def add_seed_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--seed', type=int, default=0, help='seed of the weights and the inputs. Default: 0')


def add_out_option(parser: argparse.ArgumentParser, default: Optional[Path], writes: str = 'OUT.json and OUT.md',
                   default_text: Optional[str] = None) -> None:
    shown = default_text or (str(default.relative_to(REPO)) if default is not None else '-')
    parser.add_argument('--out', type=Path, default=default, help=f'writes {writes}. Default: {shown}')


def add_memory_options(parser: argparse.ArgumentParser, child: Callable[[argparse.Namespace], None],
                       metavar: str = 'CANDIDATE', optional: bool = True) -> None:
    """The hidden option a memory child is started with (``bench.main`` then runs ``child(args)`` instead of the
    subcommand); with ``optional``, ``--no-memory`` to skip the children."""
    if optional:
        parser.add_argument('--no-memory', action='store_true', help='skip the per-candidate peak-memory processes')
    parser.add_argument(MEMORY_CHILD_FLAG, dest='memory_child', metavar=metavar, help=argparse.SUPPRESS)
    parser.set_defaults(_memory_child_main=child)


def add_shared_options(parser: argparse.ArgumentParser, out: Optional[Path],
                       threads_what: str = 'torch.set_num_threads', load_when: Optional[str] = None,
                       memory_child: Optional[Callable] = None, memory_metavar: str = 'CANDIDATE',
                       memory_optional: bool = True, out_writes: str = 'OUT.json and OUT.md',
                       out_default_text: Optional[str] = None) -> None:
    """``--threads``, ``--seed``, ``--out``; with ``load_when``, ``--max-load`` / ``--max-wait``; with
    ``memory_child``, the memory child's options (:func:`add_memory_options`)."""
    add_threads_option(parser, threads_what)
    add_seed_option(parser)
    if load_when is not None:
        add_load_options(parser, load_when)
    if memory_child is not None:
        add_memory_options(parser, memory_child, memory_metavar, memory_optional)
    add_out_option(parser, out, out_writes, out_default_text)


def check_at_least(parser: argparse.ArgumentParser, args: argparse.Namespace, **minimums: float) -> None:
    """Stops with a usage error naming the first option (a number or a list of them) below its minimum."""
    for name, low in minimums.items():
        value = getattr(args, name)
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(v is not None and v < low for v in values):
            parser.error(f'--{name.replace("_", "-")} must be >= {low}, got {value}')


def options(args: argparse.Namespace) -> dict:
    """The parsed options as the results record them (the entry point's own entries, which start with ``_``, and
    the memory child's left out)."""
    return {k: v for k, v in vars(args).items() if not k.startswith('_') and k != 'memory_child'}


# ---------------------------------------------------------------------------------------------------------------------
# the machine

def wait_if_asked(args: argparse.Namespace, log: Callable[[str], None], poll_s: float = 15.0) -> Optional[dict]:
    """With ``--max-load``, waits (at most ``--max-wait`` s) for the load to drop below it and returns what
    :func:`~mmfastvit.deploy.latency.wait_for_load` says; None without it."""
    if args.max_load is None:
        return None
    waited = wait_for_load(args.max_load, args.max_wait, poll_s=poll_s, log=log)
    if not waited['below']:
        log(f"load average still {waited['load_average']} after {waited['waited_s']:.0f} s; timing anyway "
            '(recorded in the results)')
    return waited


def time_when_quiet(calls: Dict[str, Callable[[], object]], warmup: int, runs: int, args: argparse.Namespace,
                    log: Callable[[str], None], label: str = '', sync: Optional[Callable[[], None]] = None) -> dict:
    """Waits for a quiet machine (:func:`wait_if_asked`), then times ``calls`` round-robin
    (:func:`~mmfastvit.deploy.latency.time_interleaved`), logging each round.

    Returns:
        dict: ``times`` (ms per call and candidate), ``waited``, ``load_before``, ``load_after``, ``timing_s``.
    """
    waited = wait_if_asked(args, log)
    load_before = load_average()
    log(f'{label}load average before timing: {load_before}; {warmup} + {runs} rounds')
    start = time.monotonic()
    times = time_interleaved(calls, warmup, runs, sync=sync,
                             progress=lambda done, total: log(f'{label}round {done}/{total}'))
    timing_s = time.monotonic() - start
    return dict(times=times, waited=waited, load_before=load_before, load_after=load_average(), timing_s=timing_s)


def log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fmt_load(load: Optional[dict], missing: str = 'not available') -> str:
    """``1.01, 1.75, 2.18`` for a :func:`~mmfastvit.deploy.latency.load_average`, ``missing`` where there is none."""
    return ', '.join(f'{v:.2f}' for v in load.values()) if load else missing


def cpu_text(settings: dict) -> str:
    """``AMD EPYC (AuthenticAMD family 25 model 17; avx2 fma avx512f avx512_vnni avx512_bf16; 2 cores)``."""
    facts = settings.get('cpu_facts') or {}
    detail = [f"{facts.get('vendor')} family {facts.get('family')} model {facts.get('model_number')}"] if facts else []
    if facts.get('features'):
        detail.append(' '.join(facts['features']))
    detail.append(f"{settings.get('cpu_count')} cores")
    return f"{settings.get('cpu')} ({'; '.join(detail)})"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------------------------------
# peak memory in a fresh process

def run_memory_child(args: argparse.Namespace) -> int:
    """What a process started by :func:`memory_in_child` runs: the subcommand's child, at ``--threads``."""
    torch.set_num_threads(args.threads)
    args._memory_child_main(args)
    return 0


def memory_in_child(subcommand: str, name: str, child_options: Sequence[str], what: Optional[str] = None,
                    cwd: Optional[Path] = None) -> dict:
    """Runs ``bench.py SUBCOMMAND --_memory-child NAME OPTIONS`` in a fresh interpreter (with
    :data:`MEMORY_CHILD_ENV`) and returns the JSON object its last output line holds; exits if it fails."""
    cmd = [sys.executable, str(ENTRY), subcommand, MEMORY_CHILD_FLAG, name, *map(str, child_options)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **MEMORY_CHILD_ENV}, cwd=cwd)
    if proc.returncode != 0:
        sys.exit(f'memory measurement of {what or name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def forward_peak(model: nn.Module, x: torch.Tensor, runs: int) -> dict:
    """Peak extra resident memory of ``runs`` forwards, after a first one (weights and buffers in the baseline)."""
    with torch.inference_mode():
        model(x)
        return peak_extra_memory(lambda: model(x), runs)


def print_child_result(**values) -> None:
    """A memory child's answer: one JSON line, the last one it prints."""
    print(json.dumps(values), flush=True)


# ---------------------------------------------------------------------------------------------------------------------
# tables, the command, the result files

def row(cells: Sequence[str]) -> str:
    """One markdown table row."""
    return '| ' + ' | '.join(cells) + ' |'


def command_line(argv: Optional[Sequence[str]] = None) -> str:
    """The command that reproduces this run: as it was typed, or (``bench.main(argv)`` called in-process) the entry
    point with ``argv``."""
    if argv is None:
        return shlex.join(sys.orig_argv)
    return f'{ENTRY_COMMAND} {shlex.join(argv)}'


def reproduce(command: str) -> str:
    """The line every result file ends with."""
    return f'Reproduce: `{command}`'


def cpu_results(name: str, tag: Optional[str] = None) -> Path:
    """The default ``--out`` of a CPU speed or memory benchmark: ``benchmarks/results/NAME_cpu_<tag>``, ``tag`` the
    CPU's (:func:`~mmfastvit.deploy.latency.cpu_tag` of this machine's by default: ``intel-xeon``, ``amd-epyc``), so
    that results measured on different CPUs sit side by side instead of overwriting each other."""
    return RESULTS / f'{name}_cpu_{tag or cpu_tag()}'


def result_paths(out) -> Tuple[Path, Path]:
    """``OUT.json`` and ``OUT.md``."""
    out = Path(out)
    return out.with_name(out.name + '.json'), out.with_name(out.name + '.md')


def write_results(out, doc: dict, markdown: str) -> Tuple[Path, Path]:
    """Writes ``OUT.json`` (``doc``) and ``OUT.md`` (``markdown``), each all or nothing; returns their paths."""
    json_path, md_path = result_paths(out)
    write_text_atomic(json_path, json.dumps(doc, indent=2, default=str) + '\n')
    write_text_atomic(md_path, markdown)
    return json_path, md_path


# ---------------------------------------------------------------------------------------------------------------------
# the learning checks: tools/train.py and tools/test.py as a user runs them

@contextlib.contextmanager
def work_dir(path: Optional[Path]) -> Iterator[Path]:
    """``path`` (created if needed, kept), or a temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(path or tmp)
        work.mkdir(parents=True, exist_ok=True)
        yield work


def tool_command(script: str, *args: str) -> List[str]:
    return [sys.executable, str(REPO / 'tools' / script), *map(str, args)]


def run_tool(script: str, *args: str, log_path: Path, threads: int) -> str:
    """Runs ``tools/SCRIPT ARGS`` from the repository root with ``OMP_NUM_THREADS=threads``, its output going to
    ``log_path`` as it runs (so that progress can be followed); returns the log, exits with its end if it fails."""
    env: Dict[str, str] = dict(os.environ, OMP_NUM_THREADS=str(threads),
                               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    with open(log_path, 'w') as log_file:
        proc = subprocess.run(tool_command(script, *args), cwd=REPO, env=env, stdout=log_file,
                              stderr=subprocess.STDOUT, text=True)
    log = Path(log_path).read_text()
    if proc.returncode != 0:
        sys.exit(f'{script} failed (exit {proc.returncode}); log in {log_path}:\n{log[-3000:]}')
    return log

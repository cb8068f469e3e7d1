"""Latency of fused FastViT and FMViT networks on every backend available here, with the paper's protocol.

    python tools/deploy/benchmark.py --variants t8 sa12                       # classifiers, batch 8 at 256x256
    python tools/deploy/benchmark.py --variants sa12 --dense                  # backbones, batch 2 at 512x512
    python tools/deploy/benchmark.py --variants t8 s12 --compare-timm --protocol batch1 --threads 2
    python tools/deploy/benchmark.py --variants t8 fmvit_t fmvit_s --protocol batch1 --interleave
    python tools/deploy/benchmark.py --configs configs/fastvit_sa12_in1k.py configs/mask_rcnn_fastvit_sa12_1x.py

Variants: FastViT's t8 t12 s12 sa12 sa24 sa36 ma36 ("all": the seven), FMViT's fmvit_t fmvit_s fmvit_m fmvit_b
fmvit_l ("fmvit": the five). FMViT classifiers run at 224x224 (its paper's resolution) unless --shape says otherwise.

Backends: pytorch-cpu, onnxruntime-cpu and, with an NVIDIA GPU, pytorch-cuda, pytorch-cuda-graph, onnxruntime-cuda
(onnxruntime-gpu) and tensorrt (TensorRT 10/11); the ones that cannot run here are listed in the report. Writes
OUT.json (every timed run, settings, machine, load average), OUT.md (the table) and OUT.png (accuracy vs latency,
classifier variants). Exit status 0: done; 2: bad arguments; 3: no requested backend can run here.
"""
import argparse
import sys

from mmengine.logging import MMLogger
from mmengine.utils import ProgressBar

from mmfastvit.deploy.benchmark import run
from mmfastvit.deploy.cli import add_arguments, from_args
from mmfastvit.deploy.latency import wait_for_load
from mmfastvit.deploy.report import markdown_table, write_report
from mmfastvit.deploy.runtimes import BackendUnavailable
from mmfastvit.deploy.settings import BenchmarkSettings
from mmfastvit.fileio import CheckpointError


def parse_args(argv=None):
    """The flags: :class:`BenchmarkSettings`' (checked there; a bad one exits with status 2 and names it), and
    where to write, whether to wait for a quiet machine. ``args.settings`` holds the checked options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    add_arguments(BenchmarkSettings, parser)
    parser.add_argument('--max-load', type=float,
                        help='before each network, wait (up to --max-wait s) for the 1-min load average to drop below')
    parser.add_argument('--max-wait', type=float, default=900)
    parser.add_argument('--out', default='work_dirs/deploy_latency', help='writes OUT.json, OUT.md, OUT.png')
    parser.add_argument('--no-plot', action='store_true')
    args = parser.parse_args(argv)
    try:
        args.settings = from_args(BenchmarkSettings, args)
    except ValueError as err:
        parser.error(str(err))
    args.variants, args.shape = list(args.settings.variants), args.settings.shape  # as checked and expanded
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logger = MMLogger.get_instance('mmfastvit-benchmark', logger_name='mmfastvit-benchmark')
    log = logger.info

    def wait(label):
        waited = wait_for_load(args.max_load, args.max_wait, poll_s=10, log=log)
        log(f'{label}: load average {waited["load_average"]} after waiting {waited["waited_s"]} s'
            + ('' if waited['below'] else f' (still >= {args.max_load}: timing anyway; the report records it)'))
        return dict(waited_for_load=waited)

    def progress_factory(total):
        bar = ProgressBar(total)
        return lambda done, _total: bar.update()

    try:
        report = run(args.settings, log=log, progress_factory=progress_factory,
                     before_each=wait if args.max_load else None)
    except BackendUnavailable as err:
        print(f'error: {err}', file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(markdown_table(report), flush=True)
    for path in write_report(report, args.out, plot=not args.no_plot, log=log):
        log(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

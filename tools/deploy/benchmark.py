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

from mmfastvit.deploy.benchmark import BACKENDS, PROTOCOLS, run, write_report
from mmfastvit.deploy.export import DEFAULT_OPSET, EXPORTERS, check_shape
from mmfastvit.deploy.export_form import REWRITES
from mmfastvit.deploy.latency import wait_for_load
from mmfastvit.deploy.loading import canonical_variant, variant_names
from mmfastvit.deploy.runtimes import BackendUnavailable
from mmfastvit.fileio import CheckpointError

# names that stand for a family's variants
VARIANT_GROUPS = {'all': 'fastvit', 'fmvit': 'fmvit'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--variants', nargs='+', default=[], type=str.lower,
                        help=f'variants built directly: {" ".join(variant_names("fastvit"))} (or "all"), '
                             f'{" ".join(variant_names("fmvit"))} (or "fmvit")')
    parser.add_argument('--configs', nargs='+', default=[], help='configs (classifier, detector, segmentor, ...)')
    parser.add_argument('--checkpoints', nargs='+', default=[],
                        help='checkpoints for --configs, in order (default: the config\'s random initialization)')
    parser.add_argument('--dense', action='store_true', help='variants as dense backbones (out_indices 0-3)')
    parser.add_argument('--backends', nargs='+', default=None, help=f'subset of {" ".join(BACKENDS)} (default: all '
                                                                     f'that can run here)')
    parser.add_argument('--protocol', default='paper', choices=list(PROTOCOLS),
                        help='paper: batch 8 @256 (cls) / batch 2 @512 (dense); batch1: batch 1 (FMViT)')
    parser.add_argument('--batch', type=int, help='override the protocol\'s batch')
    parser.add_argument('--shape', type=int, nargs='+', help='override the input H [W] (multiples of 32)')
    parser.add_argument('--warmup', type=int, default=100, help='warm-up runs per candidate (default 100)')
    parser.add_argument('--runs', type=int, default=100, help='timed runs per candidate (default 100)')
    parser.add_argument('--threads', type=int, help='CPU threads for PyTorch and ONNX Runtime (default: torch\'s)')
    parser.add_argument('--compare-timm', action='store_true',
                        help='also time timm\'s reparameterized model (same weights, same export, same session; '
                             'FastViT only)')
    parser.add_argument('--interleave', action='store_true',
                        help='time all networks together, round-robin within each backend, so that ratios between '
                             'networks are taken under the same conditions (default: one network after the other)')
    parser.add_argument('--ort-optimization', default='all', choices=['disable', 'basic', 'extended', 'all'])
    parser.add_argument('--ort-spinning', action='store_true',
                        help='let ONNX Runtime\'s idle threads spin (its default; off here because sessions timed '
                             'round-robin then steal each other\'s cores)')
    parser.add_argument('--exporter', default='torchscript', choices=EXPORTERS)
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    parser.add_argument('--rewrites', nargs='*', default=list(REWRITES), choices=list(REWRITES),
                        help='export rewrites of our model (default all; none: --rewrites)')
    parser.add_argument('--cuda-fp32', action='store_true', help='GPU backends in float32 (default float16)')
    parser.add_argument('--no-peak', action='store_true', help='skip the matrix-multiply peak measurement')
    parser.add_argument('--max-load', type=float,
                        help='before each network, wait (up to --max-wait s) for the 1-min load average to drop below')
    parser.add_argument('--max-wait', type=float, default=900)
    parser.add_argument('--work-dir', help='keep the exported models here (default: a temporary folder)')
    parser.add_argument('--out', default='work_dirs/deploy_latency', help='writes OUT.json, OUT.md, OUT.png')
    parser.add_argument('--no-plot', action='store_true')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    variants, bad = [], []
    for name in args.variants:
        if name in VARIANT_GROUPS:
            variants += variant_names(VARIANT_GROUPS[name])
            continue
        try:
            variants.append(canonical_variant(name))
        except ValueError:
            bad.append(name)
    if bad:
        parser.error(f'unknown variants {bad}; choose from {variant_names()} (or "all", "fmvit")')
    args.variants = list(dict.fromkeys(variants))
    fmvit = [v for v in args.variants if v in variant_names('fmvit')]
    if args.compare_timm and fmvit:
        parser.error(f'--compare-timm compares FastViT variants only (timm has no FMViT): drop {fmvit}')
    if not args.variants and not args.configs:
        parser.error('give --variants and/or --configs')
    if args.backends:
        unknown = [b for b in args.backends if b not in BACKENDS]
        if unknown:
            parser.error(f'unknown backends {unknown}; choose from {list(BACKENDS)}')
    if args.shape:
        try:
            args.shape = check_shape(args.shape)
        except ValueError as err:
            parser.error(str(err))
    if (args.batch is not None and args.batch < 1) or args.runs < 1 or args.warmup < 0:
        parser.error('--batch and --runs must be >= 1, --warmup >= 0')
    if args.threads is not None and args.threads < 1:
        parser.error('--threads must be >= 1')
    if len(args.checkpoints) > len(args.configs):
        parser.error('more --checkpoints than --configs')
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
        report = run(variants=args.variants, configs=args.configs, checkpoints=args.checkpoints, dense=args.dense,
                     backends=args.backends, protocol=args.protocol, batch=args.batch, shape=args.shape,
                     warmup=args.warmup, runs=args.runs, threads=args.threads, compare_timm=args.compare_timm,
                     ort_optimization=args.ort_optimization, ort_spinning=args.ort_spinning,
                     exporter=args.exporter, opset=args.opset,
                     rewrites=args.rewrites, cuda_fp16=not args.cuda_fp32, measure_peak=not args.no_peak,
                     work_dir=args.work_dir, seed=args.seed, log=log, progress_factory=progress_factory,
                     before_each=wait if args.max_load else None, interleave_networks=args.interleave)
    except BackendUnavailable as err:
        print(f'error: {err}', file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    from mmfastvit.deploy.benchmark import markdown_table
    print(markdown_table(report), flush=True)
    for path in write_report(report, args.out, plot=not args.no_plot, log=log):
        log(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

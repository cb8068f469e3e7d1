"""The deploy part of the mmfastvit tour: export a variant to ONNX and Core ML, then time it on the backends here.

Called from ``tools/demo.py`` as ``tour_deploy(work_dir, logger)``; also runs on its own:

    python tools/demo_deploy.py [--work-dir work_dirs/demo] [--variant t8]
"""
import argparse
import os.path as osp

from mmengine.logging import MMLogger

from mmfastvit.deploy.benchmark import run
from mmfastvit.deploy.engines import available_backends
from mmfastvit.deploy.export import export
from mmfastvit.deploy.loading import from_variant
from mmfastvit.deploy.report import markdown_table, write_report
from mmfastvit.deploy.runtimes import probe


def tour_deploy(work_dir: str, logger, variant: str = 't8', warmup: int = 10, runs: int = 30) -> dict:
    """Exports ``variant`` (random but non-trivial weights) to ONNX and Core ML under ``work_dir/deploy`` and
    benchmarks it at batch 1, 256x256, on every backend available (with timm's fused model beside it when timm is
    installed). Returns the benchmark report."""
    out = osp.join(work_dir, 'deploy')
    deployable = from_variant(variant)
    log = logger.info
    logger.info(f'deploy: FastViT-{variant.upper()} classifier, fused to the deepest form, exported to {out}')
    for backend, needs in (('onnx', 'onnxruntime'), ('coreml', 'coremltools')):
        ok, why = probe(needs)
        if not ok:
            logger.info(f'{backend}: skipped, {needs} is not installed ({why}); pip install -r requirements/deploy.txt')
            continue
        report = export(deployable, backend, out, shape=(256, 256), log=lambda m, b=backend: log(f'  [{b}] {m}'))
        logger.info(f'{backend}: ' + ', '.join(osp.basename(p) for p in report['written']))
    usable, unavailable = available_backends()
    for backend, why in unavailable.items():
        logger.info(f'benchmark: {backend} not available here ({why})')
    compare = probe('timm')[0]
    logger.info(f'benchmark: batch 1, 256x256, {warmup} warm-up + {runs} timed runs per candidate on '
                f'{", ".join(usable)}' + (', beside timm\'s fused model' if compare else ''))
    result = run(variants=[variant], backends=usable, protocol='batch1', warmup=warmup, runs=runs,
                 compare_timm=compare, log=lambda m: None, command=f'python tools/demo_deploy.py --variant {variant}')
    logger.info('\n' + markdown_table(result))
    for path in write_report(result, osp.join(out, f'latency_{variant}'), log=log):
        logger.info(f'wrote {path}')
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--variant', default='t8')
    args = parser.parse_args()
    tour_deploy(args.work_dir, MMLogger.get_instance('mmfastvit-demo', log_level='INFO'), args.variant)


if __name__ == '__main__':
    main()

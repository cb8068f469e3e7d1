"""The benchmarks, one entry point: ``python benchmarks/bench.py SUBCOMMAND [options]`` from the repository root.

Subcommands (``bench.py SUBCOMMAND --help`` lists each one's options):

  eager       CPU latency and peak memory of the FastViT classifier in PyTorch eager: ours (unfused, reference-
              and full-fused) against timm's fused model
  deploy      deployed latency, PyTorch eager and ONNX Runtime: ours against timm's fused export
              (--against timm), or FastViT and FMViT timed together (--against fmvit)
  dense       CPU latency of the dense-prediction backbones (four stage outputs) against ResNet-50 and PoolFormer
  train-step  Mask R-CNN train step, FastViT-SA12 against ResNet-50: time and peak memory
  learning    learning checks, trained from scratch on generated data: det (Mask R-CNN), seg (Semantic FPN),
              hand (hand mesh), cls (the T8 ImageNet classifier)
  hand        throughput of the hand-mesh model, fused FastViT against ResNet-50
  profile     where ONNX Runtime spends its time in our export and in timm's
  fusion-precision
              the fused levels in float16 / bfloat16 against float32: does the deepest fusion cost precision?

Every subcommand writes its results to ``--out`` (default ``benchmarks/results/<name>``), the markdown ending with
the command that reproduces it. The options they share mean the same everywhere: ``--threads``, ``--warmup`` /
``--runs``, ``--max-load`` / ``--max-wait``, ``--seed``, ``--out``.
"""
import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suites package, also when imported from elsewhere

from suites import SUBCOMMANDS  # noqa: E402
from suites.common import command_line, run_memory_child  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='bench.py', description=__doc__.split('\n\n')[0],
                                     epilog=__doc__.split('\n\n')[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest='_subcommand', required=True, metavar='SUBCOMMAND')
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, '_validate', None) is not None:
        args._validate(args._parser, args)
    if getattr(args, 'memory_child', None):
        return run_memory_child(args)
    args._command = command_line(argv)
    return args._main(args) or 0


if __name__ == '__main__':
    sys.exit(main())

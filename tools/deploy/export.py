"""Export a trained FastViT or FMViT (classifier, or the backbone of a detector, segmentor, ...) for deployment.

    python tools/deploy/export.py configs/fastvit_t8_in1k.py fastvit_t8_in1k.pth --backend coreml --out exports/
    python tools/deploy/export.py configs/fastvit_sa12_in1k.py sa12.pth --backend onnx --batch 8 --out exports/
    python tools/deploy/export.py configs/fmvit_b_in1k.py fmvit_b_in1k.pth --backend onnx --out exports/
    python tools/deploy/export.py configs/mask_rcnn_fastvit_sa12_1x.py det.pth --backend tensorrt --fp16 \\
        --shape 512 --batch 2 --out exports/

The model is fused to its deepest form and checked against the unfused one, exported, and the exported file is run
(ONNX Runtime; TorchScript; TensorRT on an NVIDIA GPU; Core ML only on macOS) and compared with PyTorch. Files appear
in --out only when every check passed; a JSON report lies beside them. Exit status 0: written; 1: a check failed or
the checkpoint does not fit; 2: bad arguments; 3: the backend's packages are missing (nothing written).
"""
import argparse
import sys

from mmengine.config import DictAction

from mmfastvit.deploy.export import BACKENDS, DEFAULT_OPSET, EXPORTERS, ExportError, check_backend, check_shape, export
from mmfastvit.deploy.export_form import REWRITES
from mmfastvit.deploy.runtimes import BackendUnavailable
from mmfastvit.fileio import CheckpointError

EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('config', help='the model\'s config (training config; add --cfg-options '
                                       'model.backbone.deploy=True for a fused checkpoint)')
    parser.add_argument('checkpoint', help='its checkpoint (work-dir, converted or reparameterized)')
    parser.add_argument('--backend', required=True, help=f'one of {", ".join(BACKENDS)}')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        help='input H [W], multiples of 32 (default: 256 for FastViT classifiers, 224 for FMViT '
                             'classifiers, 512 for backbones)')
    parser.add_argument('--batch', type=int, default=1, help='batch of the exported graph (default 1)')
    parser.add_argument('--fp16', action='store_true', default=None,
                        help='half precision (the default for coreml; onnx / tensorrt default to float32)')
    parser.add_argument('--fp32', dest='fp16', action='store_false', help='float32 Core ML model (not on the ANE)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET, help=f'ONNX opset (default {DEFAULT_OPSET})')
    parser.add_argument('--exporter', default='torchscript', choices=EXPORTERS,
                        help='torch.onnx exporter (default torchscript, i.e. dynamo=False)')
    parser.add_argument('--dynamic-batch', action='store_true', help='symbolic batch axis (onnx, tensorrt)')
    parser.add_argument('--max-batch', type=int, default=32, help='TensorRT profile maximum with --dynamic-batch')
    parser.add_argument('--simplify', action='store_true', help='run onnxsim on the ONNX graph')
    parser.add_argument('--rewrites', nargs='*', default=list(REWRITES), choices=list(REWRITES),
                        help='export rewrites of the fused model (default: all; none: --rewrites)')
    parser.add_argument('--name', help='file stem (default <config>_<H>x<W>_b<N>[_fp16])')
    parser.add_argument('--workspace-gib', type=float, default=4.0, help='TensorRT builder workspace')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def fail(code: int, message: str) -> int:
        print(f'error: {message}\nnothing was written to {args.out}', file=sys.stderr)
        return code

    fp16 = args.fp16 if args.fp16 is not None else args.backend == 'coreml'
    try:  # cheap checks first: nothing is loaded or written when the request cannot succeed
        check_backend(args.backend, fp16, args.exporter, args.simplify)
        if args.shape is not None:
            check_shape(args.shape)
        if args.batch < 1:
            raise ValueError(f'--batch {args.batch} must be >= 1')
    except BackendUnavailable as err:
        return fail(EXIT_UNAVAILABLE, str(err))
    except ValueError as err:
        return fail(EXIT_USAGE, str(err))

    from mmfastvit.deploy.loading import default_shape, load_from_config
    try:
        deployable = load_from_config(args.config, args.checkpoint, args.cfg_options)
        shape = args.shape or default_shape(deployable)
        export(deployable, args.backend, args.out, shape=shape, batch=args.batch, fp16=fp16, opset=args.opset,
               exporter=args.exporter, dynamic_batch=args.dynamic_batch, max_batch=args.max_batch,
               simplify=args.simplify, rewrites=args.rewrites, name=args.name, workspace_gib=args.workspace_gib)
    except BackendUnavailable as err:
        return fail(EXIT_UNAVAILABLE, str(err))
    except (FileNotFoundError, CheckpointError, ExportError, TypeError) as err:
        return fail(EXIT_FAILED, str(err))
    except ValueError as err:
        return fail(EXIT_USAGE, str(err))
    return 0


if __name__ == '__main__':
    sys.exit(main())

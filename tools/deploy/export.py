"""Export a trained FastViT or FMViT (classifier, or the backbone of a detector, segmentor, ...) for deployment.

    python tools/deploy/export.py configs/fastvit_t8_in1k.py fastvit_t8_in1k.pth --backend coreml --out exports/
    python tools/deploy/export.py configs/fastvit_sa12_in1k.py sa12.pth --backend onnx --batch 8 --out exports/
    python tools/deploy/export.py configs/fmvit_b_in1k.py fmvit_b_in1k.pth --backend onnx --out exports/
    python tools/deploy/export.py configs/fastvit_sa12_in1k.py sa12.pth --backend openvino --precision int8 \\
        --calib-config configs/fastvit_sa12_in1k.py --out exports/
    python tools/deploy/export.py configs/mask_rcnn_fastvit_sa12_1x.py det.pth --backend tensorrt --fp16 \\
        --shape 512 --batch 2 --out exports/

The model is fused to its deepest form and checked against the unfused one, exported, and the exported file is run
(ONNX Runtime; OpenVINO, with an accuracy check on the dataset's val images for bf16 / int8; TorchScript; TensorRT on
an NVIDIA GPU; Core ML only on macOS) and compared with PyTorch. Files appear in --out only when every check passed;
a JSON report lies beside them. Exit status 0: written; 1: a check failed or the checkpoint does not fit; 2: bad
arguments; 3: the backend's packages, or the CPU feature its precision needs, are missing (nothing written).
"""
import argparse
import sys

from mmengine.config import DictAction

from mmfastvit.deploy.cli import add_arguments, from_args
from mmfastvit.deploy.export import ExportError, ExportRequest, export
from mmfastvit.deploy.runtimes import BackendUnavailable
from mmfastvit.fileio import CheckpointError

EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3


def parse_args(argv=None):
    """The model's config and checkpoint, the output folder and :class:`ExportRequest`'s flags."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('config', help='the model\'s config (training config; add --cfg-options '
                                       'model.backbone.deploy=True for a fused checkpoint)')
    parser.add_argument('checkpoint', help='its checkpoint (work-dir, converted or reparameterized)')
    parser.add_argument('--out', required=True, help='output folder')
    add_arguments(ExportRequest, parser)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def fail(code: int, message: str) -> int:
        print(f'error: {message}\nnothing was written to {args.out}', file=sys.stderr)
        return code

    try:  # cheap checks first: nothing is loaded or written when the request cannot succeed
        request = from_args(ExportRequest, args)
    except BackendUnavailable as err:
        return fail(EXIT_UNAVAILABLE, str(err))
    except ValueError as err:
        return fail(EXIT_USAGE, str(err))

    from mmfastvit.deploy.loading import load_from_config
    try:
        export(load_from_config(args.config, args.checkpoint, args.cfg_options), request, args.out)
    except BackendUnavailable as err:
        return fail(EXIT_UNAVAILABLE, str(err))
    except (FileNotFoundError, CheckpointError, ExportError, TypeError) as err:
        return fail(EXIT_FAILED, str(err))
    except ValueError as err:
        return fail(EXIT_USAGE, str(err))
    return 0


if __name__ == '__main__':
    sys.exit(main())

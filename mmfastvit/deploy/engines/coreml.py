"""Core ML for the iPhone: an ML program package (``--backend coreml``, iOS 16, FP16 compute by default) converted
from the traced export form, with Apple's input name. Conversion runs everywhere; prediction, and so the check
against PyTorch, only on macOS. coremltools is imported when used.
"""
import json
import platform
import warnings
from typing import Dict, Tuple

import torch

from ... import __version__
from ..loading import INPUT_NAME
from ..runtimes import require
from ..verify import FP16_TOLERANCE, compare
from .base import Engine, ExportJob, register_engine


def coreml_can_predict() -> Tuple[bool, str]:
    """Whether Core ML models can run here (macOS only; conversion works everywhere)."""
    if platform.system() != 'Darwin':
        return False, f'Core ML prediction needs macOS (this is {platform.system()})'
    return True, platform.mac_ver()[0]


_MIL_DTYPES = {10: 'float16', 11: 'float32', 12: 'float64', 13: 'bfloat16'}
_ARRAY_DTYPES = {65552: 'float16', 65568: 'float32', 65600: 'float64', 131104: 'int32'}


def coreml_spec_summary(spec) -> dict:
    """What a Core ML model spec declares: input / output shapes and types, and the element types of the program's
    floating-point constants (the weights), which show the precision it computes in."""
    def arrays(features):
        return {f.name: dict(shape=list(f.type.multiArrayType.shape), dtype=_ARRAY_DTYPES.get(
            f.type.multiArrayType.dataType, str(f.type.multiArrayType.dataType))) for f in features}

    weights: Dict[str, int] = {}
    ops: Dict[str, int] = {}
    for function in spec.mlProgram.functions.values():
        for op in function.block_specializations[function.opset].operations:
            ops[op.type] = ops.get(op.type, 0) + 1
            if op.type == 'const':
                for output in op.outputs:
                    dtype = _MIL_DTYPES.get(output.type.tensorType.dataType)
                    if dtype:
                        weights[dtype] = weights.get(dtype, 0) + 1
    return dict(specification_version=spec.specificationVersion, is_mlprogram=spec.WhichOneof('Type') == 'mlProgram',
                inputs=arrays(spec.description.input), outputs=arrays(spec.description.output),
                float_constants=weights, ops=ops)


@register_engine
class CoreMLEngine(Engine):
    name = 'coreml'
    title = 'Core ML'
    export_backend = 'coreml'
    export_options = ('fp16',)
    default_fp16 = True  # an FP32 program stays off the Neural Engine

    def require(self, request) -> None:
        require('coremltools', 'the Core ML export')

    def export(self, job: ExportJob) -> None:
        ct = require('coremltools', 'the Core ML export')
        import numpy as np
        deployable, x, fp16 = job.deployable, job.x, job.request.fp16
        output_names = deployable.output_names
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            traced = torch.jit.trace(job.form, (x,), check_trace=False)
            mlmodel = ct.convert(
                traced,
                # float32 inputs and outputs as in Apple's export; the program computes in compute_precision
                inputs=[ct.TensorType(name=INPUT_NAME, shape=tuple(x.shape), dtype=np.float32)],
                outputs=[ct.TensorType(name=name, dtype=np.float32) for name in output_names],
                convert_to='mlprogram',
                compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
                minimum_deployment_target=ct.target.iOS16)
        family = type(deployable.backbone).__name__
        mlmodel.short_description = (f'{family} {deployable.kind} ({deployable.name}), fused and exported by '
                                     f'mmfastvit {__version__}')
        mlmodel.input_description[INPUT_NAME] = (f'normalized RGB image batch {tuple(x.shape)} (NCHW, ImageNet mean / '
                                                 f'std applied by the caller)')
        for name in output_names:
            mlmodel.output_description[name] = 'class scores' if name == 'logits' else f'{name} feature map'
        mlmodel.user_defined_metadata['mmfastvit.source'] = json.dumps(deployable.source, default=str)
        job.files['coreml'] = f'{job.name}.mlpackage'
        mlmodel.save(job.path('coreml'))
        info = dict(format='mlprogram', compute_precision='float16' if fp16 else 'float32',
                    minimum_deployment_target='iOS16', **coreml_spec_summary(mlmodel.get_spec()))
        job.log(f'Core ML: mlprogram, {info["compute_precision"]}, iOS16+, input "{INPUT_NAME}" {tuple(x.shape)}')
        job.info['coreml'] = info

    def verify(self, job: ExportJob) -> None:
        can, why = coreml_can_predict()
        if not can:
            job.verification['coreml'] = dict(verified=False, reason=why + '; open the .mlpackage in Xcode '
                                              '(Performance tab) or run coremltools predict on a Mac to check it')
            return
        ct = require('coremltools', 'Core ML prediction')
        pred = ct.models.MLModel(job.path('coreml')).predict({INPUT_NAME: job.x.numpy()})
        outputs = [torch.from_numpy(pred[name]).float() for name in job.deployable.output_names]
        result = compare('Core ML vs PyTorch', outputs, job.expected, FP16_TOLERANCE if job.request.fp16 else 1e-3)
        job.verification['coreml'] = dict(verified=True, engine='coremltools predict (macOS)', **result)

"""3D hand mesh on FreiHAND: the MANO layer, the FreiHAND dataset and transforms, the MANO regression head and model,
the official evaluation, and inference on your own images (:mod:`mmfastvit.hand.apis`, drawings, ``.obj`` files).
Needs smplx and scipy (requirements/hand.txt); configs load it with ``custom_imports=dict(imports=['mmfastvit.hand'])``,
which registers everything below under the mmfastvit scope."""
from mmfastvit.datasets.synthetic.mano import make_synthetic_mano

from .apis import HandMeshInferencer, hand_demo, inference_hand, init_hand_model
from .dataset import FreiHANDDataset
from .evaluation import FreiHANDMetric, evaluate_freihand, write_pred_json
from .head import MANORegressionHead
from .mano import MANOLayer
from .mano_file import load_mano_file
from .mesh_io import save_obj
from .model import HandMeshEstimator
from .transforms import HandColorNoise, HandCropAffine, HandPoseFromMANO, PackHandInputs
from .visualization import HandMeshVisualizationHook, draw_hand_mesh

__all__ = [
    'FreiHANDDataset', 'FreiHANDMetric', 'evaluate_freihand', 'write_pred_json', 'MANORegressionHead', 'MANOLayer',
    'load_mano_file', 'make_synthetic_mano', 'HandMeshEstimator', 'HandColorNoise', 'HandCropAffine',
    'HandPoseFromMANO', 'PackHandInputs', 'HandMeshInferencer', 'hand_demo', 'inference_hand', 'init_hand_model',
    'save_obj', 'HandMeshVisualizationHook', 'draw_hand_mesh'
]

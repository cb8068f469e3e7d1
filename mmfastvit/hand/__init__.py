"""3D hand mesh on FreiHAND: the MANO layer, the FreiHAND dataset and transforms, the MANO regression head and model,
and the official evaluation. Needs smplx and scipy (requirements/hand.txt); configs load it with
``custom_imports=dict(imports=['mmfastvit.hand'])``, which registers everything below under the mmfastvit scope."""
from .dataset import FreiHANDDataset
from .evaluation import FreiHANDMetric, evaluate_freihand, write_pred_json
from .head import MANORegressionHead
from .mano import MANOLayer, load_mano_file, make_synthetic_mano
from .model import HandMeshEstimator
from .transforms import HandColorNoise, HandCropAffine, HandPoseFromMANO, PackHandInputs

__all__ = [
    'FreiHANDDataset', 'FreiHANDMetric', 'evaluate_freihand', 'write_pred_json', 'MANORegressionHead', 'MANOLayer',
    'load_mano_file', 'make_synthetic_mano', 'HandMeshEstimator', 'HandColorNoise', 'HandCropAffine',
    'HandPoseFromMANO', 'PackHandInputs'
]

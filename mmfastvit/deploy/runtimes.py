"""The optional packages the engines need (onnx, onnxruntime, onnxsim, openvino, nncf, coremltools, tensorrt, timm,
matplotlib): probing and importing them when used.

A package is imported inside the function that needs it, so importing the deploy modules costs nothing and the tools
say which package is missing, and how to install it, instead of failing at import.
"""
import importlib
from typing import Optional, Tuple


class BackendUnavailable(RuntimeError):
    """An engine the request needs is not installed or cannot run here; the message says which and how to get it."""


_INSTALL_HINTS = {
    'onnx': 'pip install -r requirements/deploy.txt (onnx, onnxruntime, onnxscript)',
    'onnxruntime': 'pip install -r requirements/deploy.txt (onnxruntime; onnxruntime-gpu for the CUDA provider)',
    'onnxsim': 'pip install onnxsim==0.8.1 (requirements/deploy.txt)',
    'coremltools': 'pip install coremltools==9.0 (requirements/deploy.txt)',
    'openvino': 'pip install openvino==2026.4.1 (requirements/deploy.txt)',
    'nncf': 'pip install nncf==3.4.0 (requirements/deploy.txt)',
    'tensorrt': 'install TensorRT 10 or 11 with its Python bindings for your CUDA (pip install tensorrt-cu12 / '
                'tensorrt-cu13 on a machine that can reach NVIDIA\'s package host), on a machine with an NVIDIA GPU',
}


def probe(module: str) -> Tuple[bool, str]:
    """``(True, version)`` if ``module`` imports, else ``(False, why)``."""
    try:
        mod = importlib.import_module(module)
    except Exception as err:  # ImportError, or OSError from a binding whose shared libraries are missing
        return False, f'{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}'
    return True, str(getattr(mod, '__version__', 'unknown'))


def require(module: str, purpose: str, hint: Optional[str] = None):
    """Imports ``module`` or raises :class:`BackendUnavailable` saying what it was needed for and how to install it
    (``hint``, by default the one known for ``module``)."""
    ok, detail = probe(module)
    if not ok:
        raise BackendUnavailable(f'{purpose} needs the `{module}` package, which cannot be imported here ({detail}); '
                                 f'{hint or _INSTALL_HINTS.get(module, "install it")}')
    return importlib.import_module(module)

"""Rotation representations for the MANO head: the continuous 6D form, rotation matrices and axis-angle.

All functions take torch tensors of any leading shape, keep dtype and device, and are differentiable (including at the
identity for axis-angle). numpy arrays are refused: convert at the call site.

6D layout (one layout for targets, predictions and the identity initialisation): the 6 numbers are the first two
**columns** of ``R``, column after column::

    x[..., 0:3] = R[..., :, 0]        x[..., 3:6] = R[..., :, 1]

Decoding is Gram-Schmidt, ``b1 = n(a1)``, ``b2 = n(a2 - (b1 . a2) b1)``, ``b3 = b1 x b2``, and ``R = [b1 b2 b3]`` with
``b1, b2, b3`` as columns; so ``rot6d_to_matrix(matrix_to_rot6d(R)) == R`` for every rotation, and any 6 numbers whose
two halves are not parallel decode to a proper rotation (det +1). The identity's 6D is ``[1, 0, 0, 0, 1, 0]``.
(pytorch3d stores the rows instead and SPIN/HMR read the numbers interleaved: their 6D vectors are not this one's.)

Example:
    >>> import torch
    >>> R = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 1.5707963]], dtype=torch.float64))
    >>> matrix_to_rot6d(R).round(decimals=4).tolist()
    [[0.0, 1.0, 0.0, -1.0, 0.0, 0.0]]
    >>> matrix_to_axis_angle(rot6d_to_matrix(matrix_to_rot6d(R))).round(decimals=4).tolist()
    [[0.0, 0.0, 1.5708]]
"""
import torch
import torch.nn.functional as F
from torch import Tensor

IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

# Below this squared angle (rad^2) the Rodrigues coefficients use their Taylor series: the first omitted term,
# theta^6 / 5040, is under float64's resolution there, and the series has a finite gradient at theta = 0.
_SMALL_ANGLE_SQ = 1e-4
# Below this squared quaternion vector norm matrix_to_axis_angle uses the series of atan(x) / x (error < 1e-18).
_SMALL_SIN_SQ = 1e-6
_NORM_EPS = 1e-12


def _check(x, name: str, trailing: tuple, func: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f'{func}: {name} must be a torch.Tensor, got {type(x).__name__} (convert numpy arrays with '
                        'torch.as_tensor at the call site)')
    if not x.is_floating_point():
        raise TypeError(f'{func}: {name} must be a floating point tensor, got {x.dtype}')
    if tuple(x.shape[x.dim() - len(trailing):]) != trailing or x.dim() < len(trailing):
        expected = ', '.join(['...'] + [str(t) for t in trailing])
        raise ValueError(f'{func}: {name} must have shape [{expected}], got {list(x.shape)}')


def rot6d_to_matrix(x: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` from 6D vectors ``[..., 6]`` (two columns, Gram-Schmidt; see the module
    docstring). The two halves must not be parallel (or zero)."""
    _check(x, 'x', (6, ), 'rot6d_to_matrix')
    a1, a2 = x[..., 0:3], x[..., 3:6]
    b1 = F.normalize(a1, dim=-1, eps=_NORM_EPS)
    b2 = F.normalize(a2 - (b1 * a2).sum(dim=-1, keepdim=True) * b1, dim=-1, eps=_NORM_EPS)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def matrix_to_rot6d(R: Tensor) -> Tensor:
    """6D vectors ``[..., 6]`` of rotation matrices ``[..., 3, 3]``: their first two columns, column after column."""
    _check(R, 'R', (3, 3), 'matrix_to_rot6d')
    return torch.cat((R[..., :, 0], R[..., :, 1]), dim=-1)


def _skew(v: Tensor) -> Tensor:
    """``[..., 3, 3]`` cross-product matrices ``K`` with ``K @ w == v x w``."""
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    return torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(v.shape[:-1] + (3, 3))


def axis_angle_to_matrix(aa: Tensor) -> Tensor:
    """Rodrigues: rotation matrices ``[..., 3, 3]`` of axis-angle vectors ``[..., 3]`` (axis times angle in radians).

    ``R = I + A K + B K^2`` with ``K`` the cross-product matrix of ``aa`` itself (not the unit axis),
    ``A = sin(t) / t`` and ``B = (1 - cos(t)) / t^2 = 2 sin^2(t / 2) / t^2``; near ``t = 0`` both are evaluated by
    their Taylor series, so the result and its gradient are exact and finite at the identity.
    """
    _check(aa, 'aa', (3, ), 'axis_angle_to_matrix')
    theta_sq = (aa * aa).sum(dim=-1)
    small = theta_sq < _SMALL_ANGLE_SQ
    # The other branch of torch.where still runs: feed it a harmless angle so that no 0/0 reaches the gradient.
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta_sq), theta_sq))
    a = torch.where(small, 1.0 - theta_sq / 6.0 + theta_sq * theta_sq / 120.0, torch.sin(theta) / theta)
    half_sin = torch.sin(0.5 * theta)
    b = torch.where(small, 0.5 - theta_sq / 24.0 + theta_sq * theta_sq / 720.0,
                    2.0 * half_sin * half_sin / (theta * theta))
    K = _skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand(K.shape)
    return eye + a[..., None, None] * K + b[..., None, None] * (K @ K)


def matrix_to_quaternion(R: Tensor) -> Tensor:
    """Unit quaternions ``[..., 4]`` as ``(w, x, y, z)`` with ``w >= 0`` of rotation matrices ``[..., 3, 3]``.

    Shepperd's method: each of ``4w^2 = 1 + tr``, ``4x^2 = 1 + R00 - R11 - R22``, ... gives one way to read the
    quaternion off ``R``; the one with the largest square (at least 1/4 of the total) is used, which keeps the
    division well conditioned at every angle, 0 and pi included.
    """
    _check(R, 'R', (3, 3), 'matrix_to_quaternion')
    r00, r01, r02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    r10, r11, r12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    r20, r21, r22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    squares = torch.stack((1.0 + r00 + r11 + r22, 1.0 + r00 - r11 - r22, 1.0 - r00 + r11 - r22,
                           1.0 - r00 - r11 + r22), dim=-1)  # 4 w^2, 4 x^2, 4 y^2, 4 z^2
    # Row i is 4 q_i * (w, x, y, z); dividing by 4 q_i = 2 sqrt(4 q_i^2) reads q off it.
    rows = torch.stack((
        torch.stack((squares[..., 0], r21 - r12, r02 - r20, r10 - r01), dim=-1),
        torch.stack((r21 - r12, squares[..., 1], r10 + r01, r02 + r20), dim=-1),
        torch.stack((r02 - r20, r10 + r01, squares[..., 2], r12 + r21), dim=-1),
        torch.stack((r10 - r01, r20 + r02, r21 + r12, squares[..., 3]), dim=-1),
    ), dim=-2)
    # Unused rows may have a zero square: clamping keeps their (discarded) values and gradients finite. The chosen row
    # has 4 q_i^2 >= 1, far above both clamps.
    denom = 2.0 * torch.sqrt(squares.clamp(min=_NORM_EPS)).clamp(min=0.1)
    candidates = rows / denom[..., None]
    best = squares.argmax(dim=-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    q = F.normalize(q, dim=-1, eps=_NORM_EPS)
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """Axis-angle vectors ``[..., 3]`` (angle in ``[0, pi]``) of rotation matrices ``[..., 3, 3]``.

    Through the quaternion ``(w, v)`` with ``w >= 0``: angle ``t = 2 atan2(|v|, w)`` and ``aa = v t / |v|``; for small
    ``|v|`` the factor ``t / |v|`` is its Taylor series in ``x = |v| / w``, ``(2 / w) (1 - x^2 / 3 + x^4 / 5)``. At
    exactly pi both ``aa`` and ``-aa`` are correct; which one is returned is unspecified.
    """
    _check(R, 'R', (3, 3), 'matrix_to_axis_angle')
    q = matrix_to_quaternion(R)
    w, v = q[..., 0], q[..., 1:]
    n_sq = (v * v).sum(dim=-1)
    small = n_sq < _SMALL_SIN_SQ
    n = torch.sqrt(torch.where(small, torch.ones_like(n_sq), n_sq))
    w_safe = torch.where(small, w, torch.ones_like(w))  # w > 0.999 where small
    x_sq = n_sq / (w_safe * w_safe)  # atan(x) / x = 1 - x^2 / 3 + x^4 / 5 - ..., x = |v| / w
    series = 2.0 / w_safe * (1.0 - x_sq / 3.0 + x_sq * x_sq / 5.0)
    factor = torch.where(small, series, 2.0 * torch.atan2(n, w) / n)
    return v * factor[..., None]

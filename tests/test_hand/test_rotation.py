"""Rotation conversions: the 6D column layout, Gram-Schmidt decoding of arbitrary numbers to proper rotations,
Rodrigues against an independent formula, axis-angle round trips at 0, small angles and pi, gradients (gradcheck in
float64, finite at the identity), batching, and bad inputs."""
import math

import numpy as np
import pytest
import torch

from mmfastvit.hand.rotation import (IDENTITY_6D, axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_quaternion,
                                     matrix_to_rot6d, rot6d_to_matrix)

F64 = torch.float64


def _random_axis_angle(n, gen, max_angle=math.pi):
    axis = torch.randn(n, 3, generator=gen, dtype=F64)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    return axis * torch.rand(n, 1, generator=gen, dtype=F64) * max_angle


def _random_rotations(n, seed=0):
    return axis_angle_to_matrix(_random_axis_angle(n, torch.Generator().manual_seed(seed)))


def _rodrigues_numpy(aa):
    """Textbook Rodrigues with the unit axis: R = I + sin(t) [k] + (1 - cos(t)) [k]^2."""
    theta = np.linalg.norm(aa)
    if theta == 0:
        return np.eye(3)
    k = aa / theta
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(theta) * K + (1 - math.cos(theta)) * K @ K


def _assert_rotation(R, atol=1e-12):
    eye = torch.eye(3, dtype=R.dtype).expand(R.shape)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye, atol=atol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(R.shape[:-2], dtype=R.dtype), atol=atol, rtol=0)


def test_6d_is_the_first_two_columns_and_identity_is_1_0_0_0_1_0():
    R = _random_rotations(5)
    x = matrix_to_rot6d(R)
    assert x.shape == (5, 6)
    torch.testing.assert_close(x[:, 0:3], R[:, :, 0], atol=0, rtol=0)
    torch.testing.assert_close(x[:, 3:6], R[:, :, 1], atol=0, rtol=0)
    assert matrix_to_rot6d(torch.eye(3)).tolist() == list(IDENTITY_6D) == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert torch.equal(rot6d_to_matrix(torch.tensor(IDENTITY_6D)), torch.eye(3))
    # a quarter turn about z: first column (0, 1, 0), second (-1, 0, 0); the transposed layout would differ
    quarter = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64))
    torch.testing.assert_close(matrix_to_rot6d(quarter), torch.tensor([0, 1, 0, -1, 0, 0], dtype=F64), atol=1e-15,
                               rtol=0)


def test_matrix_to_6d_to_matrix_round_trip_exact_for_rotations():
    R = _random_rotations(64).reshape(4, 16, 3, 3)
    back = rot6d_to_matrix(matrix_to_rot6d(R))
    assert back.shape == (4, 16, 3, 3)
    torch.testing.assert_close(back, R, atol=1e-14, rtol=0)


def test_arbitrary_6d_decodes_to_a_proper_rotation_by_gram_schmidt():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 50, 6, generator=gen, dtype=F64) * 3.0
    R = rot6d_to_matrix(x)
    assert R.shape == (2, 50, 3, 3)
    _assert_rotation(R)
    a1, a2 = x[..., :3], x[..., 3:]
    # column 0 is a1 normalised; column 1 lies in span(a1, a2) on a2's side of a1; column 2 completes a right hand
    torch.testing.assert_close(R[..., :, 0], a1 / a1.norm(dim=-1, keepdim=True), atol=1e-14, rtol=0)
    torch.testing.assert_close((R[..., :, 2] * a2).sum(-1), torch.zeros(2, 50, dtype=F64), atol=1e-12, rtol=0)
    assert ((R[..., :, 1] * a2).sum(-1) > 0).all()
    torch.testing.assert_close(R[..., :, 2], torch.linalg.cross(R[..., :, 0], R[..., :, 1]), atol=1e-14, rtol=0)
    # scaling either half changes nothing
    torch.testing.assert_close(rot6d_to_matrix(torch.cat((a1 * 5.0, a2 * 0.1), -1)), R, atol=1e-13, rtol=0)


def test_rot6d_gradients():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 6, generator=gen, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(rot6d_to_matrix, (x, ))
    R = _random_rotations(3).requires_grad_()
    assert torch.autograd.gradcheck(matrix_to_rot6d, (R, ))


def test_axis_angle_to_matrix_matches_textbook_rodrigues_and_is_a_rotation():
    gen = torch.Generator().manual_seed(3)
    aa = torch.cat((_random_axis_angle(40, gen), _random_axis_angle(5, gen, 1e-3), torch.zeros(1, 3, dtype=F64)))
    R = axis_angle_to_matrix(aa)
    expected = torch.from_numpy(np.stack([_rodrigues_numpy(a) for a in aa.numpy()]))
    torch.testing.assert_close(R, expected, atol=1e-14, rtol=0)
    _assert_rotation(R)
    # the rotation turns vectors about the axis by the angle, right-handed: x -> y for +90 deg about z
    quarter = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64))
    torch.testing.assert_close(quarter @ torch.tensor([1.0, 0, 0], dtype=F64), torch.tensor([0, 1.0, 0], dtype=F64),
                               atol=1e-15, rtol=0)
    # dtype and leading dimensions are kept
    assert axis_angle_to_matrix(torch.zeros(2, 3, 4, 3)).shape == (2, 3, 4, 3, 3)
    assert axis_angle_to_matrix(torch.zeros(3)).dtype == torch.float32


@pytest.mark.parametrize('angle', [0.0, 1e-12, 1e-7, 1e-4, 3e-3, 0.02, 0.5, 2.0, math.pi - 1e-3, math.pi - 1e-8])
def test_axis_angle_round_trip(angle):
    gen = torch.Generator().manual_seed(4)
    axis = torch.randn(16, 3, generator=gen, dtype=F64)
    aa = axis / axis.norm(dim=-1, keepdim=True) * angle
    back = matrix_to_axis_angle(axis_angle_to_matrix(aa))
    torch.testing.assert_close(back, aa, atol=1e-13, rtol=1e-12)


def test_axis_angle_at_pi_is_either_sign():
    gen = torch.Generator().manual_seed(5)
    axis = torch.randn(16, 3, generator=gen, dtype=F64)
    aa = axis / axis.norm(dim=-1, keepdim=True) * math.pi
    R = axis_angle_to_matrix(aa)
    back = matrix_to_axis_angle(R)
    error = torch.minimum((back - aa).norm(dim=-1), (back + aa).norm(dim=-1))
    assert error.max() < 1e-12
    torch.testing.assert_close(axis_angle_to_matrix(back), R, atol=1e-14, rtol=0)


def test_matrix_to_axis_angle_of_random_rotations_and_quaternion_convention():
    gen = torch.Generator().manual_seed(6)
    aa = _random_axis_angle(200, gen).reshape(10, 20, 3)
    torch.testing.assert_close(matrix_to_axis_angle(axis_angle_to_matrix(aa)), aa, atol=1e-12, rtol=0)
    q = matrix_to_quaternion(axis_angle_to_matrix(aa))
    angle = aa.norm(dim=-1)
    torch.testing.assert_close(q[..., 0], torch.cos(angle / 2), atol=1e-13, rtol=0)  # w = cos(t/2) >= 0
    torch.testing.assert_close(q[..., 1:], aa / angle[..., None] * torch.sin(angle / 2)[..., None], atol=1e-13,
                               rtol=0)


@pytest.mark.parametrize('angle', [0.0, 1e-5, 0.7, 3.0])
def test_axis_angle_gradients(angle):
    gen = torch.Generator().manual_seed(7)
    axis = torch.randn(3, 3, generator=gen, dtype=F64)
    aa = (axis / axis.norm(dim=-1, keepdim=True) * angle).requires_grad_()
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa, ))
    R = axis_angle_to_matrix(aa.detach()).requires_grad_()
    assert torch.autograd.gradcheck(matrix_to_axis_angle, (R, ))


def test_gradient_at_the_identity_is_finite_and_the_generators():
    aa = torch.zeros(3, dtype=F64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(axis_angle_to_matrix, aa)  # [3, 3, 3]: dR / d aa_i
    assert torch.isfinite(jac).all()
    generators = torch.tensor([[[0, 0, 0], [0, 0, -1], [0, 1, 0]], [[0, 0, 1], [0, 0, 0], [-1, 0, 0]],
                               [[0, -1, 0], [1, 0, 0], [0, 0, 0]]], dtype=F64)
    torch.testing.assert_close(jac.permute(2, 0, 1), generators, atol=1e-15, rtol=0)
    R = torch.eye(3, dtype=F64).requires_grad_()
    matrix_to_axis_angle(R).sum().backward()
    assert torch.isfinite(R.grad).all()


def test_bad_inputs():
    with pytest.raises(TypeError, match='torch.Tensor'):
        rot6d_to_matrix(np.zeros(6))
    with pytest.raises(TypeError, match='floating point'):
        axis_angle_to_matrix(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r'rot6d_to_matrix: x must have shape \[\.\.\., 6\], got \[2, 9\]'):
        rot6d_to_matrix(torch.zeros(2, 9))
    with pytest.raises(ValueError, match=r'\[\.\.\., 3, 3\], got \[4, 9\]'):
        matrix_to_axis_angle(torch.zeros(4, 9))
    with pytest.raises(ValueError, match=r'\[\.\.\., 3\], got \[4\]'):
        axis_angle_to_matrix(torch.zeros(4))
    with pytest.raises(ValueError, match='matrix_to_rot6d'):
        matrix_to_rot6d(torch.zeros(3, 2))

"""A synthetic MANO model file, a stand-in for the licence-gated ``MANO_RIGHT.pkl`` in tests and smoke runs.

:func:`make_synthetic_mano` writes a plain numpy pickle of the 9 arrays :func:`mmfastvit.hand.mano_file.load_mano_file`
reads and smplx needs: random but valid, with MANO's sizes, kinematic tree and fingertip vertices. Its geometry is not
the real hand's, only its size and topology. Also importable as ``mmfastvit.hand.make_synthetic_mano``.

Needs numpy; MANO's sizes and joint orders come from :mod:`mmfastvit.hand.conventions`, imported when a file is
written (so importing ``mmfastvit.datasets`` does not import the hand task).
"""
import os
import os.path as osp
import pickle
from typing import Dict, Union

import numpy as np

# Rest joints of the synthetic hand in a hand frame (metres): u along the fingers, s across the palm towards the
# thumb, n out of the back of the hand. MANO order. Not the real MANO geometry, only its size and topology.
_FINGERS = (  # MANO joints, MCP (u, s), phalanx lengths proximal / middle / distal(to tip)
    ((1, 2, 3), (0.085, 0.025), (0.040, 0.024, 0.022)),  # index
    ((4, 5, 6), (0.090, 0.003), (0.044, 0.028, 0.024)),  # middle
    ((7, 8, 9), (0.074, -0.035), (0.032, 0.020, 0.020)),  # pinky
    ((10, 11, 12), (0.084, -0.017), (0.041, 0.027, 0.023)),  # ring
)
_THUMB = ((0.025, 0.020, -0.008), (0.050, 0.045, -0.012), (0.070, 0.060, -0.014), (0.088, 0.072, -0.015))
# MANO's distal joint of each finger of ``MANO_TIP_VERTICES`` (thumb, index, middle, ring, pinky).
_TIP_JOINTS = (15, 3, 6, 12, 9)
# Where the wrist sits in MANO's frame (the real model's wrist is also away from the origin; the fingers point to -x).
_WRIST = np.array([0.095, 0.006, 0.006])
_PALM_VERTICES = 178  # the other 600 are 40 per finger joint


def _synthetic_skeleton(num_joints: int):
    """Rest joints (16, 3) and the end point of each joint's bone (the child joint or the fingertip), hand frame."""
    joints = np.zeros((num_joints, 3))
    ends = np.zeros((num_joints, 3))
    for ids, (u0, s0), lengths in _FINGERS:
        direction = np.array([1.0, 0.25 * s0 / u0, -0.08])
        direction /= np.linalg.norm(direction)
        point = np.array([u0, s0, 0.0])
        for joint, length in zip(ids, lengths):
            joints[joint] = point
            point = point + length * direction
            ends[joint] = point
    for joint, (start, end) in zip((13, 14, 15), zip(_THUMB[:-1], _THUMB[1:])):
        joints[joint], ends[joint] = start, end
    ends[0] = joints[4]  # the palm "bone" runs from the wrist to the middle finger's MCP
    return joints, ends


def _to_mano_frame(points: np.ndarray) -> np.ndarray:
    """Hand frame (u, s, n) -> MANO-like frame: fingers along -x, the back of the hand towards +y, thumb towards +z."""
    u, s, n = points[..., 0], points[..., 1], points[..., 2]
    return np.stack((-u, n, s), axis=-1) + _WRIST


def synthetic_mano_params(seed: int = 0) -> Dict[str, np.ndarray]:
    """The 9 MANO arrays of a random but valid hand (see :func:`make_synthetic_mano`)."""
    from mmfastvit.hand.conventions import (MANO_PARENTS, MANO_TIP_VERTICES, NUM_BETAS, NUM_FACES, NUM_MANO_JOINTS,
                                            NUM_VERTICES)
    tip_of_joint = dict(zip(_TIP_JOINTS, MANO_TIP_VERTICES))  # distal joint -> its fingertip vertex
    rng = np.random.default_rng(seed)
    joints, ends = _synthetic_skeleton(NUM_MANO_JOINTS)
    # Which bone (joint) each vertex belongs to; the fingertip vertices on their finger's distal bone.
    bone = np.concatenate([np.zeros(_PALM_VERTICES, dtype=np.int64), np.repeat(np.arange(1, NUM_MANO_JOINTS), 40)])
    rng.shuffle(bone)
    for joint, tip in tip_of_joint.items():
        if bone[tip] != joint:
            other = next(i for i in np.flatnonzero(bone == joint) if i not in tip_of_joint.values())
            bone[tip], bone[other] = bone[other], bone[tip]
    t = rng.uniform(0.0, 1.0, size=NUM_VERTICES)
    verts = np.zeros((NUM_VERTICES, 3))
    for v in range(NUM_VERTICES):
        b = int(bone[v])
        if b == 0:  # palm: a flat box between the wrist and the knuckles
            verts[v] = (rng.uniform(-0.005, 0.075), rng.uniform(-0.042, 0.033), rng.uniform(-0.012, 0.012))
            continue
        axis = ends[b] - joints[b]
        axis_unit = axis / np.linalg.norm(axis)
        if v in tip_of_joint.values():
            verts[v] = ends[b] + 0.004 * axis_unit  # the fingertip's skin, just past the bone's end
            t[v] = 1.0
            continue
        normal = np.cross(axis_unit, rng.normal(size=3))
        normal /= np.linalg.norm(normal)
        radius = (0.011 if b >= 13 else 0.009) * (1.0 - 0.15 * ((b - 1) % 3))
        verts[v] = joints[b] + t[v] * axis + radius * rng.uniform(0.8, 1.0) * normal
    v_template = _to_mano_frame(verts)
    joints_mano = _to_mano_frame(joints)

    parents = np.array(MANO_PARENTS)
    weights = rng.uniform(0.005, 0.02, size=(NUM_VERTICES, NUM_MANO_JOINTS))  # positive everywhere
    weights[np.arange(NUM_VERTICES), bone] += 1.0
    has_parent = bone > 0
    weights[np.flatnonzero(has_parent), parents[bone[has_parent]]] += 0.6 * (1.0 - t[has_parent])
    weights /= weights.sum(axis=1, keepdims=True)

    # Each joint is regressed from the 12 template vertices nearest to it, with positive weights summing to 1.
    J_regressor = np.zeros((NUM_MANO_JOINTS, NUM_VERTICES))
    for j in range(NUM_MANO_JOINTS):
        dist = np.linalg.norm(v_template - joints_mano[j], axis=1)
        near = np.argsort(dist)[:12]
        J_regressor[j, near] = np.exp(-(dist[near] / 0.01)**2) * rng.uniform(0.5, 1.0, size=12)
        J_regressor[j] /= J_regressor[j].sum()

    # Shape: beta 0 scales the hand about the wrist (3 % per unit), the others move bones by a few millimetres.
    shapedirs = np.zeros((NUM_VERTICES, 3, NUM_BETAS))
    shapedirs[:, :, 0] = 0.03 * (v_template - _WRIST)
    bone_moves = rng.normal(0.0, 0.0015, size=(NUM_BETAS - 1, NUM_MANO_JOINTS, 3))
    shapedirs[:, :, 1:] = np.einsum('vj,bjc->vcb', weights, bone_moves)
    shapedirs += rng.normal(0.0, 2e-4, size=shapedirs.shape)

    # Pose correctives: each vertex reacts to the (R - I) features of its bone and its bone's parent only.
    posedirs = np.zeros((NUM_VERTICES, 3, 9 * (NUM_MANO_JOINTS - 1)))
    for v in range(NUM_VERTICES):
        for j in {int(bone[v]), int(parents[bone[v]]) if bone[v] > 0 else 0} - {0}:
            posedirs[v, :, 9 * (j - 1):9 * j] = rng.normal(0.0, 1e-3, size=(3, 9))

    # Triangles between near neighbours.
    dist = np.linalg.norm(v_template[:, None] - v_template[None], axis=-1)
    neighbours = np.argsort(dist, axis=1)[:, 1:7]
    firsts = rng.integers(0, NUM_VERTICES, size=NUM_FACES)
    faces = np.stack([np.concatenate(([a], rng.choice(neighbours[a], size=2, replace=False))) for a in firsts])

    hands_components = np.linalg.qr(rng.normal(size=(45, 45)))[0]
    # Mean pose: the fingers a little curled (flexion about MANO's z axis, see _to_mano_frame), the thumb random.
    hands_mean = rng.normal(0.0, 0.03, size=(15, 3))
    hands_mean[:12, 2] += rng.uniform(0.1, 0.35, size=12)
    hands_mean[12:] += rng.normal(0.0, 0.15, size=(3, 3))

    kintree_table = np.stack((parents, np.arange(NUM_MANO_JOINTS))).astype(np.int64)
    return dict(v_template=v_template, shapedirs=shapedirs, posedirs=posedirs, J_regressor=J_regressor,
                weights=weights, kintree_table=kintree_table, f=faces.astype(np.int64),
                hands_components=hands_components, hands_mean=hands_mean.reshape(45))


def make_synthetic_mano(path: Union[str, os.PathLike], seed: int = 0) -> str:
    """Writes a synthetic ``MANO_RIGHT.pkl``: a plain numpy pickle of the 9 arrays, random but valid, readable by
    :func:`~mmfastvit.hand.mano_file.load_mano_file` and by smplx. For tests and smoke runs; its geometry is not the
    real hand's.

    MANO's kinematic tree, a hand-sized template (~0.18 m long, wrist away from the origin as in the real file) whose
    vertices sit around the bones, fingertip vertices ``MANO_TIP_VERTICES`` at the tips, positive row-normalised
    skinning weights, a non-negative row-normalised ``J_regressor`` on the vertices nearest each joint, small shape
    and pose blend shapes, triangles between neighbouring vertices, an orthonormal ``hands_components`` and a slightly
    curled ``hands_mean``.

    Args:
        path (str | PathLike): File to write (its directory is created).
        seed (int): Seed; the same seed gives the same file. Defaults to 0.

    Returns:
        str: ``path``.
    """
    path = os.fspath(path)
    params = synthetic_mano_params(seed)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'wb') as f:
        pickle.dump(params, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path

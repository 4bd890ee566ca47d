"""Joint layouts as immutable values, and conversion between them by joint name.

A :class:`Skeleton` is a frozen value: joint names, parents (a tree, ``-1`` at the root),
and everything derived from them (bones, left/right mirror permutation, named bone
subsets). Nothing here is mutable; ``select``/``remove_joints``/``reparent`` return new
values. Look layouts up with :func:`get` (names in :data:`LAYOUTS`).

Canonical joint vocabulary
--------------------------
Layouts share one vocabulary so that conversion can work by name:

* ``pelvis``: the root, midway between the hips (Human3.6M "Hip").
* ``spine``: mid-torso (Human3.6M "Spine1"; DeepMimic's ``chest`` joint sits at the same
  height and stands in for it; JHMDB's ``belly`` is close to it).
* ``neck``: the base of the neck, between the shoulders (Human3.6M's 17-joint "Thorax",
  stored as "Neck" in its ``metadata.xml``; MPI-INF-3DHP ``neck``; MPII ``thorax``).
* ``head``: the centre of the head at nose level (Human3.6M's "Neck/Nose", stored as
  "Head"; MPI-INF-3DHP ``head``; JHMDB's face point; DeepMimic's head-sphere centre).
* ``head_top``: the top of the skull (Human3.6M "Head" site; MPI-INF-3DHP, MPII, LSP).
* limbs: ``{left,right}_{shoulder,elbow,wrist,hip,knee,ankle}``; the ankle is Human3.6M's
  "Foot" joint.

Conversion (:func:`convert`) copies joints present in both layouts and *synthesises* the
others from documented affine combinations of source joints (see :data:`SYNTHESIS_RULES`):

=============  ====================================================================
target joint   first rule whose inputs exist (each input itself may be synthesised)
=============  ====================================================================
``pelvis``     ``pelvis``; else the mid-hip ``(left_hip + right_hip) / 2``
``neck``       ``neck``; else MPII ``thorax``; else mid-shoulder
``spine``      ``spine``; else DeepMimic ``chest``; else JHMDB ``belly``; else
               ``(pelvis + neck) / 2`` (Human3.6M's spine sits about halfway)
``head``       ``head``; else COCO ``nose``; else ``(upper_neck + head_top) / 2``
``head_top``   ``head_top``; else ``head + 0.7 (head - neck)``, an extrapolation
               along the neck-to-head direction that lands about 0.12 m above
               the nose on a Human3.6M-sized subject
=============  ====================================================================

So COCO to Human3.6M-17 takes the pelvis as the mid-hip, the neck (thorax) as the
mid-shoulder, the spine halfway between them, the head at the nose and the head top by
extrapolation. The conversion is linear in the joints (it is one fixed matrix), works on
2D and 3D arrays alike, NumPy or JAX, and :func:`conversion_matrix` reports which target
joints were synthesised.

2D detector layouts
-------------------
``openpose_body25``, ``openpose_body25b``, ``openpose_coco18``, ``mediapipe_33``,
``halpe_26`` and ``coco_wholebody_23`` (body + feet of COCO-WholeBody) are the joint orders
that :mod:`jpose.detections` reads. Their correspondences to the vocabulary above:

========================  ==================================================================
detector joint            canonical name (and what conversion to ``h36m_17`` does with it)
========================  ==================================================================
OpenPose ``MidHip``       ``pelvis`` (copied; other layouts get the mid-hip)
OpenPose ``Neck``         ``neck`` (it is the mid-shoulder point; copied)
BODY_25B ``UpperNeck``    ``upper_neck`` (MPII's; not used for h36m_17, whose ``neck`` is
                          the mid-shoulder)
BODY_25B ``HeadTop``      ``head_top`` (copied)
Halpe ``Head``            ``head_top`` (the top of the head; copied)
Halpe ``Neck``/``Hip``    ``neck`` / ``pelvis`` (copied)
``Nose``                  ``nose`` (becomes ``head``)
toes, heels               ``{left,right}_{big_toe,small_toe,heel}`` (unused by h36m_17)
MediaPipe extras          ``*_eye_inner/outer``, ``*_mouth``, ``*_foot_index``,
                          ``*_{pinky,index,thumb}_knuckle`` (unused by h36m_17)
========================  ==================================================================
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "Skeleton",
    "LAYOUTS",
    "LENGTH_INVARIANT_BONES",
    "BONE_CORRESPONDENCES",
    "SYNTHESIS_RULES",
    "get",
    "conversion_matrix",
    "convert",
    "convert_visibility",
    "convert_confidence",
    "bone_lengths",
    "mirror",
]


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """An immutable joint layout.

    Attributes:
      name: layout name, as accepted by :func:`get`.
      joint_names: one canonical name per joint, in array order.
      parents: index of each joint's parent, ``-1`` for the root. Parents need not come
        before their children in the order.
      bone_subsets: named groups of bones, each bone a ``(parent_name, child_name)``
        pair; only bones whose two joints exist in this layout are kept (the built-in
        layouts first map a missing canonical bone to its :data:`BONE_CORRESPONDENCES`
        stand-in).
    """

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    bone_subsets: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def __post_init__(self):
        if len(self.joint_names) != len(self.parents):
            raise ValueError(
                f"Skeleton {self.name!r}: {len(self.joint_names)} joint_names but "
                f"{len(self.parents)} parents.")
        if len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError(f"Skeleton {self.name!r}: duplicate joint names.")
        n = len(self.parents)
        if any(not -1 <= p < n for p in self.parents):
            raise ValueError(f"Skeleton {self.name!r}: parent index out of range.")
        if sum(p == -1 for p in self.parents) != 1:
            raise ValueError(f"Skeleton {self.name!r}: needs exactly one root (-1).")
        for j in range(n):  # Every joint must reach the root: no cycles.
            seen, k = set(), j
            while k != -1:
                if k in seen:
                    raise ValueError(f"Skeleton {self.name!r}: cycle at joint {j}.")
                seen.add(k)
                k = self.parents[k]
        for subset, bones in self.bone_subsets:
            for a, b in bones:
                if a not in self.joint_names or b not in self.joint_names:
                    raise ValueError(
                        f"Skeleton {self.name!r}: bone subset {subset!r} names a joint "
                        f"not in the layout: {(a, b)}.")

    # -- Basic queries -----------------------------------------------------------------
    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def root(self) -> int:
        return self.parents.index(-1)

    def index(self, joint_name: str) -> int:
        """Index of a joint by name; ``KeyError`` naming the layout if absent."""
        try:
            return self.joint_names.index(joint_name)
        except ValueError:
            raise KeyError(
                f"Joint {joint_name!r} is not in layout {self.name!r}; its joints are "
                f"{self.joint_names}.") from None

    def indices(self, joint_names: Sequence[str]) -> tuple[int, ...]:
        return tuple(self.index(n) for n in joint_names)

    @property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """Tree edges as ``(child, parent)`` index pairs, in joint order."""
        return tuple((j, p) for j, p in enumerate(self.parents) if p != -1)

    @property
    def children(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(c for c, p in enumerate(self.parents) if p == j)
                     for j in range(self.num_joints))

    # -- Symmetry ------------------------------------------------------------------------
    @property
    def left_right_pairs(self) -> tuple[tuple[int, int], ...]:
        """``(left, right)`` index pairs of mirror joints (``left_x`` <-> ``right_x``)."""
        pairs = []
        for i, name in enumerate(self.joint_names):
            if name.startswith("left_"):
                mate = "right_" + name[len("left_"):]
                if mate in self.joint_names:
                    pairs.append((i, self.joint_names.index(mate)))
        return tuple(pairs)

    @property
    def joints_left(self) -> tuple[int, ...]:
        return tuple(i for i, n in enumerate(self.joint_names) if n.startswith("left_"))

    @property
    def joints_right(self) -> tuple[int, ...]:
        return tuple(i for i, n in enumerate(self.joint_names) if n.startswith("right_"))

    @property
    def flip_permutation(self) -> tuple[int, ...]:
        """``perm`` such that ``poses[..., perm, :]`` swaps left and right joints."""
        perm = list(range(self.num_joints))
        for left, right in self.left_right_pairs:
            perm[left], perm[right] = right, left
        return tuple(perm)

    # -- Bone subsets --------------------------------------------------------------------
    @property
    def bone_subset_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.bone_subsets)

    def bone_subset(self, subset: str) -> tuple[tuple[int, int], ...]:
        """Bones of a named subset as ``(child, parent)`` index pairs.

        ``(child, parent)`` matches :attr:`bones`, so :func:`bone_lengths` accepts either.
        """
        for name, bones in self.bone_subsets:
            if name == subset:
                return tuple((self.index(b), self.index(a)) for a, b in bones)
        raise KeyError(f"Layout {self.name!r} has no bone subset {subset!r}; it has "
                       f"{self.bone_subset_names}.")

    # -- New values from old -------------------------------------------------------------
    def select(self, joint_names: Sequence[str], *, name: str | None = None) -> Skeleton:
        """A new layout with only ``joint_names``, in that order.

        A kept joint whose parent is dropped is attached to its nearest kept ancestor.
        """
        keep = self.indices(joint_names)
        keep_set = set(keep)
        parents = []
        for j in keep:
            p = self.parents[j]
            while p != -1 and p not in keep_set:
                p = self.parents[p]
            parents.append(-1 if p == -1 else keep.index(p))
        kept_names = set(joint_names)
        subsets = tuple(
            (s, tuple((a, b) for a, b in bones if a in kept_names and b in kept_names))
            for s, bones in self.bone_subsets)
        return Skeleton(name or f"{self.name}_subset", tuple(joint_names), tuple(parents),
                        subsets)

    def remove_joints(self, joint_names: Sequence[str], *,
                      name: str | None = None) -> Skeleton:
        """A new layout without ``joint_names`` (this one is unchanged)."""
        self.indices(joint_names)  # Validates the names.
        drop = set(joint_names)
        return self.select([n for n in self.joint_names if n not in drop], name=name)

    def reparent(self, new_parents: Mapping[str, str], *,
                 name: str | None = None) -> Skeleton:
        """A new layout where each ``child -> parent`` in ``new_parents`` is re-attached."""
        parents = list(self.parents)
        for child, parent in new_parents.items():
            parents[self.index(child)] = self.index(parent)
        return dataclasses.replace(self, name=name or self.name, parents=tuple(parents))


# ---------------------------------------------------------------------------------------
# Named bone subsets (by canonical joint names; kept only where both joints exist).

#: The 11 bones whose lengths Li et al. (ICCV 2019, Eq. 5) keep constant within a video:
#: upper and lower arms and legs, pelvis to each hip, and chin to head top (canonical
#: ``head``, the head centre at nose level, to ``head_top``; see BONE_CORRESPONDENCES for
#: layouts without a ``head`` joint).
LENGTH_INVARIANT_BONES: tuple[tuple[str, str], ...] = (
    ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("right_hip", "right_knee"),
    ("left_knee", "left_ankle"), ("right_knee", "right_ankle"),
    ("pelvis", "left_hip"), ("pelvis", "right_hip"),
    ("head", "head_top"),
)

_LIMB_BONES = LENGTH_INVARIANT_BONES[:8]

#: Stand-ins, by joint correspondence, for a canonical bone in a layout that lacks one of
#: its joints: the first pair whose two joints the layout has is used. MPII has no
#: ``head`` (nose-level) point; its ``upper_neck`` (top of the neck, under the chin) is
#: the chin end of Li et al.'s chin -> head-top bone, so mpii_16 keeps all 11 bones.
BONE_CORRESPONDENCES: Mapping[tuple[str, str], tuple[tuple[str, str], ...]] = (
    types.MappingProxyType({
        ("head", "head_top"): (("upper_neck", "head_top"),),
    }))


def _resolve_bone(bone: tuple[str, str], names: set[str]) -> tuple[str, str] | None:
    """``bone`` if both its joints are in ``names``, else its first stand-in that is."""
    for a, b in (bone,) + BONE_CORRESPONDENCES.get(bone, ()):
        if a in names and b in names:
            return (a, b)
    return None


def _subsets(joint_names: Sequence[str]):
    names = set(joint_names)
    out = []
    for subset, bones in (("length_invariant", LENGTH_INVARIANT_BONES),
                          ("limbs", _LIMB_BONES)):
        resolved = (_resolve_bone(bone, names) for bone in bones)
        out.append((subset, tuple(bone for bone in resolved if bone is not None)))
    return tuple(out)


def _layout(name: str, spec: Sequence[tuple[str, str | None]]) -> Skeleton:
    """Builds a layout from ``(joint, parent_name_or_None)`` rows."""
    names = tuple(j for j, _ in spec)
    parents = tuple(-1 if p is None else names.index(p) for _, p in spec)
    return Skeleton(name, names, parents, _subsets(names))


# ---------------------------------------------------------------------------------------
# The layouts. Sources: ../shared/DATASET_FORMATS.md (per-dataset joint orders).

# Human3.6M, all 32 joints stored in the raw CDF files (metadata.xml skel_pos order; the
# parent column is VideoPose3D's h36m_skeleton). "*_end" joints are BVH end sites.
H36M_32 = _layout("h36m_32", [
    ("pelvis", None),               # 0  Hips
    ("right_hip", "pelvis"),        # 1  RightUpLeg
    ("right_knee", "right_hip"),    # 2  RightLeg
    ("right_ankle", "right_knee"),  # 3  RightFoot
    ("right_toe", "right_ankle"),   # 4  RightToeBase
    ("right_toe_end", "right_toe"),  # 5  Site
    ("left_hip", "pelvis"),         # 6  LeftUpLeg
    ("left_knee", "left_hip"),      # 7  LeftLeg
    ("left_ankle", "left_knee"),    # 8  LeftFoot
    ("left_toe", "left_ankle"),     # 9  LeftToeBase
    ("left_toe_end", "left_toe"),   # 10 Site
    ("lower_spine", "pelvis"),      # 11 Spine (coincides with the pelvis region)
    ("spine", "lower_spine"),       # 12 Spine1
    ("neck", "spine"),              # 13 Neck   (17-joint "Thorax")
    ("head", "neck"),               # 14 Head   (17-joint "Neck/Nose")
    ("head_top", "head"),           # 15 Site   (17-joint "Head")
    ("left_clavicle", "spine"),     # 16 LeftShoulder
    ("left_shoulder", "left_clavicle"),  # 17 LeftArm
    ("left_elbow", "left_shoulder"),     # 18 LeftForeArm
    ("left_wrist", "left_elbow"),        # 19 LeftHand
    ("left_thumb", "left_wrist"),        # 20 LeftHandThumb
    ("left_thumb_end", "left_thumb"),    # 21 Site
    ("left_hand", "left_wrist"),         # 22 L_Wrist_End
    ("left_hand_end", "left_hand"),      # 23 Site
    ("right_clavicle", "spine"),         # 24 RightShoulder
    ("right_shoulder", "right_clavicle"),  # 25 RightArm
    ("right_elbow", "right_shoulder"),     # 26 RightForeArm
    ("right_wrist", "right_elbow"),        # 27 RightHand
    ("right_thumb", "right_wrist"),        # 28 RightHandThumb
    ("right_thumb_end", "right_thumb"),    # 29 Site
    ("right_hand", "right_wrist"),         # 30 R_Wrist_End
    ("right_hand_end", "right_hand"),      # 31 Site
])

#: The standard 17 joints (32-joint indices [0,1,2,3,6,7,8,12,13,14,15,17,18,19,25,26,27])
#: with the shoulders re-parented to the neck/thorax as VideoPose3D does.
H36M_17 = H36M_32.select(
    ["pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
     "left_ankle", "spine", "neck", "head", "head_top", "left_shoulder", "left_elbow",
     "left_wrist", "right_shoulder", "right_elbow", "right_wrist"],
    name="h36m_17",
).reparent({"left_shoulder": "neck", "right_shoulder": "neck"})

# MPI-INF-3DHP training annotations: 28 joints (official mpii_get_joints 'all' order).
MPI_INF_3DHP_28 = _layout("mpi_inf_3dhp_28", [
    ("spine3", "spine2"),          # 0
    ("spine4", "spine3"),          # 1
    ("spine2", "spine"),           # 2
    ("spine", "pelvis"),           # 3  (corresponds to the Human3.6M spine)
    ("pelvis", None),              # 4  root
    ("neck", "spine4"),            # 5
    ("head", "neck"),              # 6
    ("head_top", "head"),          # 7
    ("left_clavicle", "spine4"),   # 8
    ("left_shoulder", "left_clavicle"),  # 9
    ("left_elbow", "left_shoulder"),     # 10
    ("left_wrist", "left_elbow"),        # 11
    ("left_hand", "left_wrist"),         # 12
    ("right_clavicle", "spine4"),        # 13
    ("right_shoulder", "right_clavicle"),  # 14
    ("right_elbow", "right_shoulder"),     # 15
    ("right_wrist", "right_elbow"),        # 16
    ("right_hand", "right_wrist"),         # 17
    ("left_hip", "pelvis"),        # 18
    ("left_knee", "left_hip"),     # 19
    ("left_ankle", "left_knee"),   # 20
    ("left_foot", "left_ankle"),   # 21
    ("left_toe", "left_foot"),     # 22
    ("right_hip", "pelvis"),       # 23
    ("right_knee", "right_hip"),   # 24
    ("right_ankle", "right_knee"),  # 25
    ("right_foot", "right_ankle"),  # 26
    ("right_toe", "right_foot"),    # 27
])

#: MPI-INF-3DHP test set: the 17 'relevant' joints, 28-joint indices
#: [7,5,14,15,16,9,10,11,23,24,25,18,19,20,4,3,6]; root = pelvis (index 14).
MPI_INF_3DHP_17 = MPI_INF_3DHP_28.select(
    ["head_top", "neck", "right_shoulder", "right_elbow", "right_wrist",
     "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee",
     "right_ankle", "left_hip", "left_knee", "left_ankle", "pelvis", "spine", "head"],
    name="mpi_inf_3dhp_17",
)

# MPII Human Pose, 16 joints (also the stacked-hourglass detections of VideoPose3D).
MPII_16 = _layout("mpii_16", [
    ("right_ankle", "right_knee"), ("right_knee", "right_hip"), ("right_hip", "pelvis"),
    ("left_hip", "pelvis"), ("left_knee", "left_hip"), ("left_ankle", "left_knee"),
    ("pelvis", None), ("thorax", "pelvis"), ("upper_neck", "thorax"),
    ("head_top", "upper_neck"),
    ("right_wrist", "right_elbow"), ("right_elbow", "right_shoulder"),
    ("right_shoulder", "thorax"), ("left_shoulder", "thorax"),
    ("left_elbow", "left_shoulder"), ("left_wrist", "left_elbow"),
])

# COCO keypoints, 17. COCO has no pelvis; the tree (rooted at the nose) is for drawing
# and bone queries only.
COCO_17 = _layout("coco_17", [
    ("nose", None), ("left_eye", "nose"), ("right_eye", "nose"),
    ("left_ear", "left_eye"), ("right_ear", "right_eye"),
    ("left_shoulder", "nose"), ("right_shoulder", "nose"),
    ("left_elbow", "left_shoulder"), ("right_elbow", "right_shoulder"),
    ("left_wrist", "left_elbow"), ("right_wrist", "right_elbow"),
    ("left_hip", "left_shoulder"), ("right_hip", "right_shoulder"),
    ("left_knee", "left_hip"), ("right_knee", "right_hip"),
    ("left_ankle", "left_knee"), ("right_ankle", "right_knee"),
])

# Leeds Sports Pose (LSP and LSP-extended), 14 joints, rooted at the neck.
LSP_14 = _layout("lsp_14", [
    ("right_ankle", "right_knee"), ("right_knee", "right_hip"),
    ("right_hip", "right_shoulder"), ("left_hip", "left_shoulder"),
    ("left_knee", "left_hip"), ("left_ankle", "left_knee"),
    ("right_wrist", "right_elbow"), ("right_elbow", "right_shoulder"),
    ("right_shoulder", "neck"), ("left_shoulder", "neck"),
    ("left_elbow", "left_shoulder"), ("left_wrist", "left_elbow"),
    ("neck", None), ("head_top", "neck"),
])

# Penn Action, 13 joints (the 'head' point is the face), rooted at the head.
PENN_ACTION_13 = _layout("penn_action_13", [
    ("head", None), ("left_shoulder", "head"), ("right_shoulder", "head"),
    ("left_elbow", "left_shoulder"), ("right_elbow", "right_shoulder"),
    ("left_wrist", "left_elbow"), ("right_wrist", "right_elbow"),
    ("left_hip", "left_shoulder"), ("right_hip", "right_shoulder"),
    ("left_knee", "left_hip"), ("right_knee", "right_hip"),
    ("left_ankle", "left_knee"), ("right_ankle", "right_knee"),
])

# JHMDB / Sub-JHMDB, 15 joints ('head' = face/nose point), rooted at the neck.
JHMDB_15 = _layout("jhmdb_15", [
    ("neck", None), ("belly", "neck"), ("head", "neck"),
    ("right_shoulder", "neck"), ("left_shoulder", "neck"),
    ("right_hip", "belly"), ("left_hip", "belly"),
    ("right_elbow", "right_shoulder"), ("left_elbow", "left_shoulder"),
    ("right_knee", "right_hip"), ("left_knee", "left_hip"),
    ("right_wrist", "right_elbow"), ("left_wrist", "left_elbow"),
    ("right_ankle", "right_knee"), ("left_ankle", "left_knee"),
])

# The 16 joints that forward kinematics gives for the DeepMimic humanoid (sample data):
# URDF links plus a synthesised head-sphere centre ('head').
DEEPMIMIC_16 = _layout("deepmimic_16", [
    ("pelvis", None),
    ("right_hip", "pelvis"), ("right_knee", "right_hip"), ("right_ankle", "right_knee"),
    ("left_hip", "pelvis"), ("left_knee", "left_hip"), ("left_ankle", "left_knee"),
    ("chest", "pelvis"), ("neck", "chest"), ("head", "neck"),
    ("left_shoulder", "chest"), ("left_elbow", "left_shoulder"),
    ("left_wrist", "left_elbow"),
    ("right_shoulder", "chest"), ("right_elbow", "right_shoulder"),
    ("right_wrist", "right_elbow"),
])

# ---------------------------------------------------------------------------------------
# In-the-wild 2D detector layouts (jpose.detections reads their files). Joint names reuse
# the canonical vocabulary, so :func:`convert` to h36m_17 / mpi_inf_3dhp_17 works by name:
#
# * OpenPose ``Neck`` is the mid-shoulder point (OpenPose synthesised it that way for its
#   COCO training data): canonical ``neck`` (Human3.6M "Thorax"). ``MidHip`` is ``pelvis``.
# * BODY_25B ``UpperNeck`` / ``HeadTop`` come from MPII: ``upper_neck`` / ``head_top``.
# * Halpe ``Head`` is the top of the head (drawn above the forehead, linked to ``Neck``):
#   ``head_top``; ``Neck`` is ``neck``; ``Hip`` (mid-hip) is ``pelvis``.
# * Feet: ``{left,right}_{big_toe,small_toe,heel}`` (OpenPose, Halpe, COCO-WholeBody share
#   them). They are *not* Human3.6M's ``*_toe`` (ToeBase, the ball of the foot).
# * Nothing else is synthesised specially: a layout without ``pelvis`` gets the mid-hip,
#   without ``neck`` the mid-shoulder, without ``head`` the nose, without ``head_top`` the
#   extrapolation above ``head`` (see SYNTHESIS_RULES).

# OpenPose BODY_25 (the default model; doc/02_output.md "Pose Output Format (BODY_25)").
OPENPOSE_BODY25 = _layout("openpose_body25", [
    ("nose", "neck"),                     # 0  Nose
    ("neck", "pelvis"),                   # 1  Neck (mid-shoulder)
    ("right_shoulder", "neck"),           # 2  RShoulder
    ("right_elbow", "right_shoulder"),    # 3  RElbow
    ("right_wrist", "right_elbow"),       # 4  RWrist
    ("left_shoulder", "neck"),            # 5  LShoulder
    ("left_elbow", "left_shoulder"),      # 6  LElbow
    ("left_wrist", "left_elbow"),         # 7  LWrist
    ("pelvis", None),                     # 8  MidHip
    ("right_hip", "pelvis"),              # 9  RHip
    ("right_knee", "right_hip"),          # 10 RKnee
    ("right_ankle", "right_knee"),        # 11 RAnkle
    ("left_hip", "pelvis"),               # 12 LHip
    ("left_knee", "left_hip"),            # 13 LKnee
    ("left_ankle", "left_knee"),          # 14 LAnkle
    ("right_eye", "nose"),                # 15 REye
    ("left_eye", "nose"),                 # 16 LEye
    ("right_ear", "right_eye"),           # 17 REar
    ("left_ear", "left_eye"),             # 18 LEar
    ("left_big_toe", "left_ankle"),       # 19 LBigToe
    ("left_small_toe", "left_big_toe"),   # 20 LSmallToe
    ("left_heel", "left_ankle"),          # 21 LHeel
    ("right_big_toe", "right_ankle"),     # 22 RBigToe
    ("right_small_toe", "right_big_toe"),  # 23 RSmallToe
    ("right_heel", "right_ankle"),        # 24 RHeel
])

# OpenPose BODY_25B (experimental model): COCO's 17, then MPII's upper neck and head top,
# then the 6 foot points. Same joint count as BODY_25: files are told apart only by the
# reader's explicit ``layout=`` argument.
OPENPOSE_BODY25B = _layout("openpose_body25b", [
    ("nose", "upper_neck"),               # 0  Nose
    ("left_eye", "nose"),                 # 1  LEye
    ("right_eye", "nose"),                # 2  REye
    ("left_ear", "left_eye"),             # 3  LEar
    ("right_ear", "right_eye"),           # 4  REar
    ("left_shoulder", "upper_neck"),      # 5  LShoulder
    ("right_shoulder", "upper_neck"),     # 6  RShoulder
    ("left_elbow", "left_shoulder"),      # 7  LElbow
    ("right_elbow", "right_shoulder"),    # 8  RElbow
    ("left_wrist", "left_elbow"),         # 9  LWrist
    ("right_wrist", "right_elbow"),       # 10 RWrist
    ("left_hip", "left_shoulder"),        # 11 LHip
    ("right_hip", "right_shoulder"),      # 12 RHip
    ("left_knee", "left_hip"),            # 13 LKnee
    ("right_knee", "right_hip"),          # 14 RKnee
    ("left_ankle", "left_knee"),          # 15 LAnkle
    ("right_ankle", "right_knee"),        # 16 RAnkle
    ("upper_neck", None),                 # 17 UpperNeck
    ("head_top", "upper_neck"),           # 18 HeadTop
    ("left_big_toe", "left_ankle"),       # 19 LBigToe
    ("left_small_toe", "left_big_toe"),   # 20 LSmallToe
    ("left_heel", "left_ankle"),          # 21 LHeel
    ("right_big_toe", "right_ankle"),     # 22 RBigToe
    ("right_small_toe", "right_big_toe"),  # 23 RSmallToe
    ("right_heel", "right_ankle"),        # 24 RHeel
])

# OpenPose's COCO model (18 joints: COCO's 17 in another order, plus the mid-shoulder Neck).
OPENPOSE_COCO18 = _layout("openpose_coco18", [
    ("nose", "neck"),                     # 0  Nose
    ("neck", None),                       # 1  Neck (mid-shoulder)
    ("right_shoulder", "neck"),           # 2  RShoulder
    ("right_elbow", "right_shoulder"),    # 3  RElbow
    ("right_wrist", "right_elbow"),       # 4  RWrist
    ("left_shoulder", "neck"),            # 5  LShoulder
    ("left_elbow", "left_shoulder"),      # 6  LElbow
    ("left_wrist", "left_elbow"),         # 7  LWrist
    ("right_hip", "neck"),                # 8  RHip
    ("right_knee", "right_hip"),          # 9  RKnee
    ("right_ankle", "right_knee"),        # 10 RAnkle
    ("left_hip", "neck"),                 # 11 LHip
    ("left_knee", "left_hip"),            # 12 LKnee
    ("left_ankle", "left_knee"),          # 13 LAnkle
    ("right_eye", "nose"),                # 14 REye
    ("left_eye", "nose"),                 # 15 LEye
    ("right_ear", "right_eye"),           # 16 REar
    ("left_ear", "left_eye"),             # 17 LEar
])

# MediaPipe BlazePose, 33 landmarks (mediapipe PoseLandmark order). MediaPipe's
# ``mouth_left``/``mouth_right`` are named ``left_mouth``/``right_mouth`` here (the
# left/right prefix drives the mirror permutation); its ``*_pinky``, ``*_index``,
# ``*_thumb`` hand landmarks are knuckles (``*_knuckle``), ``*_foot_index`` the toe tip.
MEDIAPIPE_33 = _layout("mediapipe_33", [
    ("nose", None),                                 # 0  nose
    ("left_eye_inner", "nose"),                     # 1  left_eye_inner
    ("left_eye", "left_eye_inner"),                 # 2  left_eye
    ("left_eye_outer", "left_eye"),                 # 3  left_eye_outer
    ("right_eye_inner", "nose"),                    # 4  right_eye_inner
    ("right_eye", "right_eye_inner"),               # 5  right_eye
    ("right_eye_outer", "right_eye"),               # 6  right_eye_outer
    ("left_ear", "left_eye_outer"),                 # 7  left_ear
    ("right_ear", "right_eye_outer"),               # 8  right_ear
    ("left_mouth", "nose"),                         # 9  mouth_left
    ("right_mouth", "nose"),                        # 10 mouth_right
    ("left_shoulder", "nose"),                      # 11 left_shoulder
    ("right_shoulder", "nose"),                     # 12 right_shoulder
    ("left_elbow", "left_shoulder"),                # 13 left_elbow
    ("right_elbow", "right_shoulder"),              # 14 right_elbow
    ("left_wrist", "left_elbow"),                   # 15 left_wrist
    ("right_wrist", "right_elbow"),                 # 16 right_wrist
    ("left_pinky_knuckle", "left_wrist"),           # 17 left_pinky
    ("right_pinky_knuckle", "right_wrist"),         # 18 right_pinky
    ("left_index_knuckle", "left_wrist"),           # 19 left_index
    ("right_index_knuckle", "right_wrist"),         # 20 right_index
    ("left_thumb_knuckle", "left_wrist"),           # 21 left_thumb
    ("right_thumb_knuckle", "right_wrist"),         # 22 right_thumb
    ("left_hip", "left_shoulder"),                  # 23 left_hip
    ("right_hip", "right_shoulder"),                # 24 right_hip
    ("left_knee", "left_hip"),                      # 25 left_knee
    ("right_knee", "right_hip"),                    # 26 right_knee
    ("left_ankle", "left_knee"),                    # 27 left_ankle
    ("right_ankle", "right_knee"),                  # 28 right_ankle
    ("left_heel", "left_ankle"),                    # 29 left_heel
    ("right_heel", "right_ankle"),                  # 30 right_heel
    ("left_foot_index", "left_ankle"),              # 31 left_foot_index
    ("right_foot_index", "right_ankle"),            # 32 right_foot_index
])

# Halpe-26 (AlphaPose's halpe_26 models; the body part of Halpe-FullBody's 136): COCO's 17
# in COCO order, then Head (top of the head), Neck, Hip (mid-hip) and the 6 foot points.
HALPE_26 = _layout("halpe_26", [
    ("nose", "neck"), ("left_eye", "nose"), ("right_eye", "nose"),      # 0-2
    ("left_ear", "left_eye"), ("right_ear", "right_eye"),               # 3-4
    ("left_shoulder", "neck"), ("right_shoulder", "neck"),              # 5-6
    ("left_elbow", "left_shoulder"), ("right_elbow", "right_shoulder"),  # 7-8
    ("left_wrist", "left_elbow"), ("right_wrist", "right_elbow"),       # 9-10
    ("left_hip", "pelvis"), ("right_hip", "pelvis"),                    # 11-12
    ("left_knee", "left_hip"), ("right_knee", "right_hip"),             # 13-14
    ("left_ankle", "left_knee"), ("right_ankle", "right_knee"),         # 15-16
    ("head_top", "neck"),                 # 17 Head
    ("neck", "pelvis"),                   # 18 Neck
    ("pelvis", None),                     # 19 Hip
    ("left_big_toe", "left_heel"),        # 20 LBigToe
    ("right_big_toe", "right_heel"),      # 21 RBigToe
    ("left_small_toe", "left_heel"),      # 22 LSmallToe
    ("right_small_toe", "right_heel"),    # 23 RSmallToe
    ("left_heel", "left_ankle"),          # 24 LHeel
    ("right_heel", "right_ankle"),        # 25 RHeel
])

# COCO-WholeBody's body and feet (its first 23 of 133 points: COCO's 17, then left big
# toe, left small toe, left heel, right big toe, right small toe, right heel; face and
# hands follow in the file and are not kept).
COCO_WHOLEBODY_23 = _layout("coco_wholebody_23", [
    ("nose", None), ("left_eye", "nose"), ("right_eye", "nose"),
    ("left_ear", "left_eye"), ("right_ear", "right_eye"),
    ("left_shoulder", "nose"), ("right_shoulder", "nose"),
    ("left_elbow", "left_shoulder"), ("right_elbow", "right_shoulder"),
    ("left_wrist", "left_elbow"), ("right_wrist", "right_elbow"),
    ("left_hip", "left_shoulder"), ("right_hip", "right_shoulder"),
    ("left_knee", "left_hip"), ("right_knee", "right_hip"),
    ("left_ankle", "left_knee"), ("right_ankle", "right_knee"),
    ("left_big_toe", "left_ankle"), ("left_small_toe", "left_ankle"),
    ("left_heel", "left_ankle"), ("right_big_toe", "right_ankle"),
    ("right_small_toe", "right_ankle"), ("right_heel", "right_ankle"),
])

#: Every layout by name (read-only mapping of immutable values).
LAYOUTS: Mapping[str, Skeleton] = types.MappingProxyType({
    s.name: s for s in (H36M_32, H36M_17, MPI_INF_3DHP_28, MPI_INF_3DHP_17, MPII_16,
                        COCO_17, LSP_14, PENN_ACTION_13, JHMDB_15, DEEPMIMIC_16,
                        OPENPOSE_BODY25, OPENPOSE_BODY25B, OPENPOSE_COCO18, MEDIAPIPE_33,
                        HALPE_26, COCO_WHOLEBODY_23)
})


def get(layout: str | Skeleton) -> Skeleton:
    """A layout by name (a :class:`Skeleton` is returned unchanged)."""
    if isinstance(layout, Skeleton):
        return layout
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise ValueError(
            f"Unknown joint layout {layout!r}; known layouts: {sorted(LAYOUTS)}.") from None


# ---------------------------------------------------------------------------------------
# Conversion between layouts.

#: For joints a source layout lacks: alternatives in order of preference, each an affine
#: combination ``((joint, weight), ...)`` whose weights sum to one. Inputs may themselves
#: be synthesised (recursively; cycles are cut).
SYNTHESIS_RULES: Mapping[str, tuple[tuple[tuple[str, float], ...], ...]] = (
    types.MappingProxyType({
        "pelvis": ((("left_hip", 0.5), ("right_hip", 0.5)),),
        "neck": ((("thorax", 1.0),),
                 (("left_shoulder", 0.5), ("right_shoulder", 0.5))),
        "thorax": ((("neck", 1.0),),),
        "spine": ((("chest", 1.0),), (("belly", 1.0),),
                  (("pelvis", 0.5), ("neck", 0.5))),
        "chest": ((("spine", 1.0),),),
        "belly": ((("spine", 1.0),),),
        "head": ((("nose", 1.0),), (("upper_neck", 0.5), ("head_top", 0.5))),
        "nose": ((("head", 1.0),),),
        "upper_neck": ((("neck", 0.5), ("head", 0.5)),),
        "head_top": ((("head", 1.7), ("neck", -0.7)),),
    }))


def _resolve(name: str, source: Skeleton, visiting: frozenset[str]) -> dict[str, float] | None:
    """Weights over source joint names that produce ``name``, or None."""
    if name in source.joint_names:
        return {name: 1.0}
    for rule in SYNTHESIS_RULES.get(name, ()):
        combo: dict[str, float] = {}
        for part, weight in rule:
            if part in visiting:
                break
            sub = _resolve(part, source, visiting | {name})
            if sub is None:
                break
            for joint, w in sub.items():
                combo[joint] = combo.get(joint, 0.0) + weight * w
        else:
            return combo
    return None


@functools.lru_cache(maxsize=None)
def _conversion(source: Skeleton, target: Skeleton):
    matrix = np.zeros((target.num_joints, source.num_joints), np.float64)
    synthesised, missing = [], []
    for t, name in enumerate(target.joint_names):
        combo = _resolve(name, source, frozenset())
        if combo is None:
            missing.append(name)
            continue
        for joint, weight in combo.items():
            matrix[t, source.index(joint)] = weight
        synthesised.append(name not in source.joint_names)
    if missing:
        raise ValueError(
            f"Cannot convert layout {source.name!r} to {target.name!r}: no source joints "
            f"and no synthesis rule give {missing}.")
    matrix.setflags(write=False)
    return matrix, tuple(synthesised)


def conversion_matrix(source: str | Skeleton,
                      target: str | Skeleton) -> tuple[np.ndarray, tuple[bool, ...]]:
    """The ``(J_target, J_source)`` read-only matrix mapping joints, and which target
    joints are synthesised (not copied) from the source."""
    return _conversion(get(source), get(target))


def _gather_weights(matrix: np.ndarray):
    """Per target joint: the contributing source indices and weights, padded.

    Padding repeats a real contributor with weight 0, so a NaN in a source joint that no
    target uses cannot leak into the result (a dense matmul would spread it everywhere).
    """
    width = int(max(1, (matrix != 0).sum(axis=1).max()))
    idx = np.zeros((matrix.shape[0], width), np.int32)
    wts = np.zeros((matrix.shape[0], width), np.float64)
    for t, row in enumerate(matrix):
        nz = np.flatnonzero(row)
        idx[t, :len(nz)] = nz
        idx[t, len(nz):] = nz[0]
        wts[t, :len(nz)] = row[nz]
    return idx, wts


def _xp(array):
    """NumPy for NumPy inputs (data pipelines), jax.numpy for everything else."""
    if isinstance(array, (np.ndarray, np.generic)):
        return np
    import jax.numpy as jnp  # Deferred: data-preparation code needs no JAX import.
    return jnp


def _lead(array: np.ndarray, ndim: int) -> np.ndarray:
    """``array`` with leading unit axes up to ``ndim`` (explicit, for rank-strict jnp)."""
    return array.reshape((1,) * (ndim - array.ndim) + array.shape)


def convert(poses: Any, source: str | Skeleton, target: str | Skeleton) -> Any:
    """Converts ``poses`` of shape ``(..., J_source, C)`` to ``(..., J_target, C)``.

    Works for 2D and 3D coordinates (any C), on NumPy arrays (result NumPy) or JAX arrays
    (result JAX, differentiable, jit-compatible). Joints present in both layouts are
    copied; others are synthesised as documented in the module docstring. The result
    keeps the dtype of ``poses``.
    """
    src, tgt = get(source), get(target)
    if getattr(poses, "ndim", 0) < 2 or poses.shape[-2] != src.num_joints:
        raise ValueError(
            f"poses must have shape (..., {src.num_joints}, C) for layout {src.name!r}; "
            f"got {getattr(poses, 'shape', None)}.")
    if src == tgt:
        return poses
    matrix, _ = _conversion(src, tgt)
    idx, wts = _gather_weights(matrix)
    xp = _xp(poses)
    gathered = poses[..., idx, :]                             # (..., Jt, K, C)
    weights = xp.asarray(_lead(wts[:, :, None], gathered.ndim), dtype=poses.dtype)
    return (gathered * weights).sum(axis=-2)


def convert_visibility(visible: Any, source: str | Skeleton,
                       target: str | Skeleton) -> Any:
    """Converts per-joint visibility ``(..., J_source)`` (bool) to ``(..., J_target)``.

    A synthesised joint is visible only when every joint it is made from is visible.
    """
    src, tgt = get(source), get(target)
    if getattr(visible, "ndim", 0) < 1 or visible.shape[-1] != src.num_joints:
        raise ValueError(
            f"visible must have shape (..., {src.num_joints}) for layout {src.name!r}; "
            f"got {getattr(visible, 'shape', None)}.")
    matrix, _ = _conversion(src, tgt)
    idx, _ = _gather_weights(matrix)
    return visible[..., idx].all(axis=-1)


def convert_confidence(confidence: np.ndarray, source: str | Skeleton,
                       target: str | Skeleton) -> np.ndarray:
    """Converts per-joint confidence ``(..., J_source)`` to ``(..., J_target)`` (NumPy).

    A synthesised joint is as confident as its least confident source joint (the
    confidence counterpart of :func:`convert_visibility`).
    """
    src, tgt = get(source), get(target)
    confidence = np.asarray(confidence)
    if confidence.ndim < 1 or confidence.shape[-1] != src.num_joints:
        raise ValueError(
            f"confidence must have shape (..., {src.num_joints}) for layout {src.name!r}; "
            f"got {confidence.shape}.")
    matrix, _ = _conversion(src, tgt)
    idx, _ = _gather_weights(matrix)
    # Padding repeats a real contributor, so the minimum over the gathered joints is exact.
    return confidence[..., idx].min(axis=-1)


def bone_lengths(poses: Any, skeleton: str | Skeleton,
                 bones: Sequence[tuple[int, int]] | None = None) -> Any:
    """Lengths ``(..., num_bones)`` of ``bones`` (default: all tree edges), in the units
    of ``poses`` (metres for jpose 3D poses, pixels for image keypoints).

    ``bones`` are ``(child, parent)`` index pairs, as :attr:`Skeleton.bones` and
    :meth:`Skeleton.bone_subset` return them.
    """
    skel = get(skeleton)
    if getattr(poses, "ndim", 0) < 2 or poses.shape[-2] != skel.num_joints:
        raise ValueError(
            f"poses must have shape (..., {skel.num_joints}, C) for layout "
            f"{skel.name!r}; got {getattr(poses, 'shape', None)}.")
    bones = skel.bones if bones is None else tuple(bones)
    child = np.array([c for c, _ in bones], np.int32)
    parent = np.array([p for _, p in bones], np.int32)
    xp = _xp(poses)
    diff = poses[..., child, :] - poses[..., parent, :]
    return xp.sqrt((diff * diff).sum(axis=-1))


def mirror(poses: Any, skeleton: str | Skeleton, *, axis: int = 0) -> Any:
    """Mirrors poses ``(..., J, C)``: negates coordinate ``axis`` and swaps left/right.

    With ``axis=0`` this is the horizontal flip used for flip augmentation, both for
    camera-frame 3D poses (x right) and for normalised screen coordinates (x in [-1, 1]
    centred on the image). Pixel coordinates must be flipped about the image width
    instead (``width - 1 - u``); convert to screen coordinates first.
    """
    skel = get(skeleton)
    if getattr(poses, "ndim", 0) < 2 or poses.shape[-2] != skel.num_joints:
        raise ValueError(
            f"poses must have shape (..., {skel.num_joints}, C) for layout "
            f"{skel.name!r}; got {getattr(poses, 'shape', None)}.")
    xp = _xp(poses)
    sign = np.ones(poses.shape[-1], np.float64)
    sign[axis] = -1.0
    flipped = poses[..., np.array(skel.flip_permutation), :]
    return flipped * xp.asarray(_lead(sign, flipped.ndim), dtype=poses.dtype)

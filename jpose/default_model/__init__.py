"""The default in-the-wild lifter shipped inside jpose: ``launch/lift.py`` without ``--model``.

Its ``lifter/`` directory is a :func:`jpose.export.export_lifter` export (``model.jaxexport``,
``variables.npz``, ``metadata.json``; load it with :class:`jpose.exported_model.ExportedLifter`)
of the run of ``launch/configs/default_lifter.py``, reproduced by::

  python launch/train.py --config=launch/configs/default_lifter.py --workdir=workdir/default
  python launch/export.py --workdir=workdir/default --output=jpose/default_model/lifter --overwrite

(about 10 minutes on 2 CPU cores).

What it is: a 27-frame VideoPose3D network (256 channels) trained on DeepMimic motion
capture filmed by random virtual cameras, bodies, detectors and occlusions
(:mod:`jpose.datasets.wild`). Input: COCO-17 2D with confidences, in focal units
(``(uv - c) / f * 2``: the user's focal length matters, pass it); output: Human3.6M-17
root-relative 3D, metres, camera frame. What it was measured to do is in the README
("The default model").
"""

from __future__ import annotations

import os

__all__ = ["DIRECTORY", "path"]

#: Where the shipped export lives.
DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lifter")


def path() -> str:
    """The default model's export directory.

    Raises:
      FileNotFoundError: the export is missing (a source checkout without it), naming
        the commands that rebuild it.
    """
    if not os.path.exists(os.path.join(DIRECTORY, "metadata.json")):
        raise FileNotFoundError(
            f"the default model is missing from {DIRECTORY}; rebuild it with "
            "`python launch/train.py --config=launch/configs/default_lifter.py "
            "--workdir=workdir/default` and `python launch/export.py "
            "--workdir=workdir/default --output=jpose/default_model/lifter --overwrite`, or pass "
            "--model=<an export directory>")
    return DIRECTORY

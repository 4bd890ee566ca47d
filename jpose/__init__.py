"""jpose: 3D human pose estimation with scarce labels, in JAX.

Conventions used everywhere in the library (see README "Concepts"):

* 3D poses are in **metres**; image keypoints in **pixels**; network inputs in
  normalised screen coordinates (``camera.pixels_to_screen``).
* Arrays of joints have shape ``(..., J, C)``: leading batch/time axes, then joints, then
  coordinates. Joint order is given by a :class:`jpose.skeleton.Skeleton` value.
* Camera frame: x right, y down, z forward (OpenCV / Human3.6M).
"""

__version__ = "0.1.0"

"""Datasets: raw releases -> TFDS array_record builds -> records -> training pipelines.

* Builders (TFDS without TensorFlow; ``launch/prepare_data.py``): :mod:`.h36m`,
  :mod:`.mpi_inf_3dhp`, :mod:`.sub_jhmdb`, :mod:`.penn_action`, :mod:`.lsp`, on the base
  in :mod:`.tfds_build` (``build``, ``load``) with :mod:`.raw_files` (clear errors),
  :mod:`.image_crops`, :mod:`.video_frames`, :mod:`.video_clips`. Each builder package
  has a ``fake_raw`` module writing a small release in the exact raw format.
* Sample data: :mod:`.samples` (DeepMimic motion capture), :mod:`.synthetic`,
  :mod:`.multiview` (the Human3.6M-like multi-view generator of the main job).
* From examples to training: :mod:`.records` (the builders' pose-sequence schema <->
  sequence records, shared by the sample data), :mod:`.protocols` (the splits of the
  five works), :mod:`.pipelines` (receptive-field windows, single frames, batches with
  exact resume and per-process slices), :mod:`.multiview_tuples`, :mod:`.augment`.
* Your own data: :mod:`.user_sequences` (any detector's 2D, camera intrinsics, optional
  3D, as ``.npz`` files: reader, writer, and a converter from the sample records).
* Human3.6M helpers: :mod:`.h36m_cameras` (``metadata.xml``), :mod:`.h36m_videopose3d`
  (VideoPose3D's ``.npz`` files, pickle opt-in).

Import the submodule you need; this package imports nothing heavy.
"""

"""Video: reading clips into RGB frames and writing frames back to video files or PNG folders.

Modules: :mod:`codec.video.io` (``probe``, ``read_frames``, ``FrameWriter``; needs PyAV) and
:mod:`codec.video.synthetic` (test clips and panning clips over still photos).  Importing this package
loads neither PyAV nor torch, so the CLI can name video options cheaply.
"""

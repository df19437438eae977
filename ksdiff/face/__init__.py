"""Face specs (which channels a frame has) and face models (channels -> vertices)."""

from ksdiff.face.specs import ARKIT_NAMES, FaceSpec, get_spec

__all__ = ["ARKIT_NAMES", "FaceSpec", "get_spec"]

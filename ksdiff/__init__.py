"""ksdiff: speech-driven 3D facial animation with KSDiff (arXiv 2509.20128)."""

__version__ = "0.1.0"

from ksdiff.errors import KsdiffError  # noqa: E402

__all__ = ["KsdiffError", "__version__"]


def __getattr__(name: str):  # lazy: keep `import ksdiff` light
    if name == "load_model":
        from ksdiff.generate import load_model

        return load_model
    raise AttributeError(name)

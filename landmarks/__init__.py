"""Core package: landmark data formats, synthetic faces, metrics, models and runtimes.

Heavy backends (onnxruntime, LiteRT, TensorFlow) are imported lazily where they are used,
so ``import landmarks`` works with only the core dependencies installed.
"""

__version__ = "0.2.0"  # the one version string (pyproject.toml reads it; CHANGELOG.md names it)

"""Benchmarks (DESIGN.md section 8): generation speed and memory against audio length, training speed, and the
compute floor (model FLOPs over the machine's measured matmul rate). Measurements, never tests.

- :func:`ksdiff.bench.inference.bench_generate` (``ksdiff bench generate``): real-time factor per stage (features,
  keyframes, diffusion, render) and peak RSS, each length in a fresh subprocess, optionally two configurations
  side by side (``--vs`` / ``--vs-config``).
- :func:`ksdiff.bench.training.bench_train` (``ksdiff bench train``): seconds per training step on batches of the
  right shapes, parameter counts, FLOPs per step.
- :mod:`ksdiff.bench.common`: machine description, matmul rate, FLOP counting, model building, recording to
  ``docs/BENCHMARKS.md``.
"""

from ksdiff.bench.common import machine_info, matmul_gflops, record_markdown

__all__ = ["machine_info", "matmul_gflops", "record_markdown"]

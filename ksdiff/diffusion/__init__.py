"""Diffusion: noise schedules and samplers (plain functions sharing one signature)."""

from ksdiff.diffusion.schedule import NoiseSchedule, make_schedule, q_sample

__all__ = ["NoiseSchedule", "make_schedule", "q_sample"]

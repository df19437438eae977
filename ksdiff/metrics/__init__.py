"""Metrics: pure functions on arrays, one definition each (DESIGN.md section 7).

=================  ===========================================================================
``lve``            lip vertex error (mm): per frame max over lip vertices of the L2 distance, mean over frames
``lve_squared``    DiffSpeaker's variant: the same with squared distances (mm²)
``fdd``            upper-face dynamics deviation: std_gt − std_pred of upper-face displacement (mm)
``head_diversity`` per sequence std over time of head rotation angles (degrees), averaged
``sample_diversity`` mean pairwise distance between samples drawn with different seeds
``beat_align``     Bailando's Beat Align between head-motion beats and speech beats
``keyframe_prf``   keyframe precision / recall / F1 with a ±2-frame tolerance
``bilabial_closure`` fraction of /p b m/ phones with the mouth closed
``envelope_correlation`` Pearson r of mouth opening with the speech envelope
``inner_lip_gap``  vertical gap (mm) between the inner lips on a head with 68 landmarks; < 0: lips crossed
``lip_envelope_correlation`` Pearson r of that gap (crossed = shut) with the speech envelope
``jitter``         mean jerk magnitude
``articulation``   per mouth channel std(pred)/std(truth) and r, their medians (under-articulation)
``capture_ratio``  median std(pred)/std(a real iPhone capture) over its quoted channels (no truth needed)
=================  ===========================================================================
"""

from ksdiff.metrics.articulation import articulation, capture_ratio
from ksdiff.metrics.beat import beat_align, motion_beats, speech_beats
from ksdiff.metrics.diversity import head_diversity, sample_diversity
from ksdiff.metrics.fdd import fdd
from ksdiff.metrics.jitter import jitter
from ksdiff.metrics.keyframes import keyframe_prf
from ksdiff.metrics.lip import lve, lve_squared
from ksdiff.metrics.lipsync import bilabial_closure, envelope_correlation, inner_lip_gap, lip_envelope_correlation

__all__ = ["articulation", "beat_align", "bilabial_closure", "capture_ratio", "envelope_correlation", "fdd",
           "head_diversity", "inner_lip_gap", "jitter", "keyframe_prf", "lip_envelope_correlation", "lve",
           "lve_squared", "motion_beats", "sample_diversity", "speech_beats"]

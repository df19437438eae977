"""Every parameter of the synthetic talking-face model in one place (docs/SYNTH.md explains each).

The viseme targets and dominance functions are tables in :mod:`ksdiff.data.synth.visemes`; everything else is
here. The config is recorded in ``dataset.json`` of every corpus, so a corpus says how it was made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ksdiff.errors import KsdiffError


@dataclass(frozen=True)
class VoiceStyle:
    """One synthetic speaker: an espeak-ng voice and an articulation style.

    Attributes:
        name: speaker id used in clip ids and ``meta.json`` (letters, digits, ``_``).
        voice: espeak-ng voice with optional variant (``en-us``, ``en+f3`` ...).
        rate: base speaking rate (words per minute); each clip draws rate ± ``SynthConfig.rate_jitter``.
        pitch: base pitch 0–100 (espeak); each clip draws pitch ± ``SynthConfig.pitch_jitter``.
        pitch_range: intonation range 0–100 (espeak).
        jaw_gain: multiplies the jaw opening (jawOpen, mouthLowerDown) of every viseme target.
        round_gain: multiplies lip rounding (mouthFunnel, mouthPucker).
        spread_gain: multiplies lip spreading (mouthStretch, mouthSmile).
        smile_bias: resting smile added to mouthSmileLeft/Right (and 0.4× to cheekSquint).
        head_gain: multiplies nod amplitude and head drift.
        brow_gain: multiplies brow raises.
        blink_rate: spontaneous blinks per minute (Poisson).
        asymmetry: right-side channels are scaled by (1 + asymmetry), left by (1 − asymmetry).
    """

    name: str
    voice: str
    rate: int = 165
    pitch: int = 50
    pitch_range: int = 50
    jaw_gain: float = 1.0
    round_gain: float = 1.0
    spread_gain: float = 1.0
    smile_bias: float = 0.0
    head_gain: float = 1.0
    brow_gain: float = 1.0
    blink_rate: float = 17.0
    asymmetry: float = 0.0


#: The default speakers: four espeak accents, male and female variants, rates 135–195 wpm, pitch 35–68.
DEFAULT_VOICES: tuple[VoiceStyle, ...] = (
    VoiceStyle("us_m1", "en-us", rate=165, pitch=45, pitch_range=55, jaw_gain=1.00, round_gain=1.00,
               spread_gain=1.00, smile_bias=0.05, head_gain=1.0, brow_gain=1.0, blink_rate=17, asymmetry=0.00),
    VoiceStyle("us_f3", "en-us+f3", rate=175, pitch=62, pitch_range=70, jaw_gain=0.85, round_gain=1.20,
               spread_gain=1.10, smile_bias=0.15, head_gain=1.2, brow_gain=1.3, blink_rate=19, asymmetry=0.04),
    VoiceStyle("gb_m3", "en+m3", rate=150, pitch=40, pitch_range=45, jaw_gain=1.20, round_gain=0.80,
               spread_gain=0.90, smile_bias=0.00, head_gain=0.8, brow_gain=0.7, blink_rate=15, asymmetry=-0.03),
    VoiceStyle("gb_f2", "en+f2", rate=185, pitch=66, pitch_range=60, jaw_gain=0.90, round_gain=1.10,
               spread_gain=1.20, smile_bias=0.10, head_gain=1.1, brow_gain=1.2, blink_rate=18, asymmetry=0.02),
    VoiceStyle("rp_m1", "en-gb-x-rp", rate=140, pitch=35, pitch_range=40, jaw_gain=1.10, round_gain=0.90,
               spread_gain=0.85, smile_bias=0.02, head_gain=0.7, brow_gain=0.8, blink_rate=16, asymmetry=0.00),
    VoiceStyle("us_m7", "en-us+m7", rate=195, pitch=50, pitch_range=50, jaw_gain=0.95, round_gain=1.05,
               spread_gain=1.00, smile_bias=0.08, head_gain=1.3, brow_gain=1.0, blink_rate=20, asymmetry=-0.05),
    VoiceStyle("sc_f4", "en-gb-scotland+f4", rate=160, pitch=58, pitch_range=65, jaw_gain=1.05, round_gain=1.15,
               spread_gain=0.95, smile_bias=0.06, head_gain=1.0, brow_gain=1.4, blink_rate=17, asymmetry=0.03),
    VoiceStyle("us_f5", "en-us+f5", rate=135, pitch=68, pitch_range=35, jaw_gain=0.80, round_gain=0.95,
               spread_gain=1.05, smile_bias=0.12, head_gain=0.9, brow_gain=0.9, blink_rate=15, asymmetry=-0.02),
)


#: Neural speakers (Piper ``en_US-joe-medium``, optional extra ``ksdiff[voice]``): natural English prosody and
#: coarticulation in the audio; phone timings from forced alignment. Two speaking rates and articulation styles.
#: Not in the default corpus (it must build without GPL extras); select them by name (``ksdiff synth --voices``).
NEURAL_VOICES: tuple[VoiceStyle, ...] = (
    VoiceStyle("joe_n1", "piper:en_US-joe-medium", rate=165, jaw_gain=1.05, round_gain=1.05, spread_gain=1.0,
               smile_bias=0.06, head_gain=1.0, brow_gain=1.0, blink_rate=17, asymmetry=0.01),
    VoiceStyle("joe_n2", "piper:en_US-joe-medium", rate=190, jaw_gain=0.9, round_gain=1.15, spread_gain=1.1,
               smile_bias=0.1, head_gain=1.2, brow_gain=1.2, blink_rate=19, asymmetry=-0.02),
)


@dataclass
class SynthConfig:
    """All parameters of the synthetic corpus (defaults in brackets are the values used by ``ksdiff synth``).

    Corpus
        minutes: total audio to generate [2.0]; clips are added until the sum reaches it.
        seed: master seed [0]; clip i uses ``numpy.random.default_rng([seed, i])``.
        fps: motion frame rate [25].
        voices: speakers, used round-robin by clip index [DEFAULT_VOICES].
        min_seconds / max_seconds: clip length bounds including the silent lead-in and tail [2, 12].
        min_phrases / max_phrases: phrases per clip (commas / full stops between them) [1, 4].
        lead_silence / tail_silence: (low, high) seconds of silence before / after the speech, uniform
            [(0.15, 0.6), (0.2, 0.6)].
        noise_dbfs: level of a white noise floor added to the audio (dBFS; None = none) [-66].
        rate_jitter / pitch_jitter: per-clip uniform deviation from the voice's rate (wpm) / pitch [12, 5];
            the rate is then clipped to [rate_min, rate_max] = [130, 200], the pitch to [30, 70].
        max_tries: sentences tried per clip before giving up on the length bounds [12].

    Mouth (targets and dominance per class: :mod:`ksdiff.data.synth.visemes`)
        visemes: the table of viseme targets (:data:`~ksdiff.data.synth.visemes.TARGET_TABLES`): ``hand`` (set
            by eye, the corpus of the models shipped so far) or ``calibrated`` (fitted to tracked real speakers,
            docs/SYNTH.md) [hand].
        plateau_frac: dominance plateau half-width as a fraction of the segment's half-duration [0.5].
        dominance_exponent: c in exp(−θ·τ^c) [1.0, negative exponential].
        theta_scale: multiplies every class's dominance rates θ (> 1 crisper, < 1 more coarticulation) [1.0].
        diphthong_split: where a diphthong switches to its second target (fraction of its duration) [0.55].
        energy_gamma: vowel jaw gain = (vowel RMS / reference RMS)^energy_gamma [0.7] ...
        energy_ref_pct: ... the reference being this percentile of the clip's vowel RMS values [90] ...
        energy_gain_min / energy_gain_max: ... clipped to this range [0.35, 1.15].
        target_jitter: σ of the per-segment log-normal jitter on each target [0.10].

    Head (axis-angle radians; translation cm)
        drift_std: std of the slow drift of headRotX/Y/Z (rad) [0.025, 0.04, 0.015].
        drift_cutoff: cutoff (Hz) of the 2nd-order low-pass that makes the drift [0.25].
        trans_std: std of the drift of headTx/Ty/Tz (cm) [0.25, 0.15, 0.35]; trans_cutoff (Hz) [0.2].
        pivot: neck pivot relative to the head origin (cm) [0, −9, −6]; rotations about it add translation.
        accent_threshold: minimum f0 rise (semitones above the clip's median f0) of a stressed vowel's peak for a
            pitch accent [1.0]; accent_full: rise (semitones) that gives strength 1 [4.0].
        accent_min_gap: minimum seconds between accents (the stronger one is kept) [0.6].
        nod_amp: headRotX of a strength-1 nod (rad, positive = chin down) [0.05]; nod_sigma: its Gaussian width
            (s) [0.13]; nod_lag: delay of the nod peak after the f0 peak (s) [0.06]; nod_yaw / nod_roll: random
            yaw / roll that accompanies a nod, as a fraction of its pitch [0.3, 0.15].
        f0_floor / f0_ceil: pyworld DIO search range (Hz) [60, 500]; f0_period: frame period (ms) [5].

    Brows
        brow_prob: probability that an accent also raises the brows [0.4] (always when strength > 0.8).
        brow_amp: browInnerUp of a strength-1 raise [0.45]; brow_outer: browOuterUp as a fraction of it [0.7].
        brow_attack / brow_decay: raised-cosine rise time and Gaussian fall σ (s) [0.10, 0.35].
        brow_drift: std of a slow (brow_cutoff Hz) drift of browInnerUp [0.03, 0.3].

    Blinks
        blink_close / blink_hold / blink_open: durations (s) of the lid closing, staying shut and opening
            [0.05, 0.02, 0.08] (≈150 ms in all).
        blink_amp: (low, high) peak eyeBlink weight [0.85, 1.0].
        blink_pause_prob: probability of a blink at a phrase boundary (pause ≥ blink_pause_min s) [0.5, 0.15].
        blink_min_gap: minimum seconds between blinks [0.4]. The spontaneous rate is per voice (``blink_rate``).
        blink_squint: eyeSquint during a blink as a fraction of eyeBlink [0.2].

    Emotion (off by default: the default corpus is unchanged)
        emotion: each clip draws a valence and an arousal uniformly in [−1, 1] (after every other random choice
            of the clip) and shows them (:func:`ksdiff.data.synth.corpus.apply_emotion`); ``meta.json`` records
            ``"emotion": [valence, arousal]`` [False].
    """

    minutes: float = 2.0
    seed: int = 0
    fps: float = 25.0
    voices: tuple[VoiceStyle, ...] = DEFAULT_VOICES
    min_seconds: float = 2.0
    max_seconds: float = 12.0
    min_phrases: int = 1
    max_phrases: int = 4
    lead_silence: tuple[float, float] = (0.15, 0.6)
    tail_silence: tuple[float, float] = (0.2, 0.6)
    noise_dbfs: float | None = -66.0
    rate_jitter: int = 12
    pitch_jitter: int = 5
    rate_min: int = 130
    rate_max: int = 200
    pitch_min: int = 30
    pitch_max: int = 70
    max_tries: int = 12
    # mouth
    visemes: str = "hand"
    plateau_frac: float = 0.5
    dominance_exponent: float = 1.0
    theta_scale: float = 1.0
    diphthong_split: float = 0.55
    energy_gamma: float = 0.7
    energy_ref_pct: float = 90.0
    energy_gain_min: float = 0.35
    energy_gain_max: float = 1.15
    target_jitter: float = 0.10
    # head
    drift_std: tuple[float, float, float] = (0.025, 0.04, 0.015)
    drift_cutoff: float = 0.25
    trans_std: tuple[float, float, float] = (0.25, 0.15, 0.35)
    trans_cutoff: float = 0.2
    pivot: tuple[float, float, float] = (0.0, -9.0, -6.0)
    accent_threshold: float = 1.0
    accent_full: float = 4.0
    accent_min_gap: float = 0.6
    nod_amp: float = 0.05
    nod_sigma: float = 0.13
    nod_lag: float = 0.06
    nod_yaw: float = 0.3
    nod_roll: float = 0.15
    f0_floor: float = 60.0
    f0_ceil: float = 500.0
    f0_period: float = 5.0
    # brows
    brow_prob: float = 0.4
    brow_amp: float = 0.45
    brow_outer: float = 0.7
    brow_attack: float = 0.10
    brow_decay: float = 0.35
    brow_drift: float = 0.03
    brow_cutoff: float = 0.3
    # blinks
    blink_close: float = 0.05
    blink_hold: float = 0.02
    blink_open: float = 0.08
    blink_amp: tuple[float, float] = (0.85, 1.0)
    blink_pause_prob: float = 0.5
    blink_pause_min: float = 0.15
    blink_min_gap: float = 0.4
    blink_squint: float = 0.2
    emotion: bool = False

    def select_voices(self, names: list[str] | None) -> "SynthConfig":
        """A copy using only the named voices (speaker names of :data:`DEFAULT_VOICES` or :data:`NEURAL_VOICES`,
        espeak voice names, or ``piper:<voice>``)."""
        if not names:
            return self
        known = {v.name: v for v in DEFAULT_VOICES + NEURAL_VOICES}
        by_voice = {v.voice: v for v in DEFAULT_VOICES + NEURAL_VOICES}
        chosen = []
        for n in names:
            if n in known:
                chosen.append(known[n])
            elif n in by_voice:
                chosen.append(by_voice[n])
            else:  # any espeak voice, default style
                if not n or any(ch in n for ch in "/\\ "):
                    raise KsdiffError(f"invalid voice name {n!r}")
                safe = "".join(ch if ch.isalnum() else "_" for ch in n)
                chosen.append(VoiceStyle(safe, n))
        return dataclasses.replace(self, voices=tuple(chosen))

    def to_dict(self) -> dict:
        """JSON-ready dict of every parameter (recorded in dataset.json)."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        if self.minutes <= 0:
            raise KsdiffError(f"--minutes must be positive, got {self.minutes:g}")
        if self.fps <= 0:
            raise KsdiffError(f"--fps must be positive, got {self.fps:g}")
        if not self.voices:
            raise KsdiffError("no voices selected")
        from ksdiff.data.synth.visemes import TARGET_TABLES

        if self.visemes not in TARGET_TABLES:
            raise KsdiffError(f"unknown viseme table {self.visemes!r} (known: {', '.join(TARGET_TABLES)})")
        if not 0 < self.min_seconds < self.max_seconds:
            raise KsdiffError("min_seconds must be positive and below max_seconds")



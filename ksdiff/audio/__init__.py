"""Audio front-end: decoding, speech encoders, prosody, transcripts."""

from ksdiff.audio.decode import SAMPLE_RATE, load_audio, write_wav

__all__ = ["SAMPLE_RATE", "load_audio", "write_wav"]

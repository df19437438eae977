"""The KSDiff model: DPSE (dpse.py), KEL (keyframes.py), the DiffSpeaker-style denoisers (denoiser.py), wired
together in ksdiff.py; hyper-parameters and ablation switches in config.py."""

"""The KSDiff model: DPSE (dpse.py), KEL (keyframes.py), the DiffSpeaker-style denoisers (denoiser.py), wired
together in ksdiff.py; hyper-parameters and ablation switches in config.py; shared attention / norm blocks in
layers.py. Losses live in ksdiff.diffusion.losses."""

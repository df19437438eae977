"""Training: run config, data pipeline, loop, checkpoints (safetensors), EMA, DDP under torchrun."""

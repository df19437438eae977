"""Exponential moving average of model weights (the weights that ``model.safetensors`` ships).

``shadow = d · shadow + (1 − d) · param`` after every optimizer step, with the warm-up
``d_k = min(decay, (1 + k) / (10 + k))`` (k = number of updates so far) so that the average is not dominated by
the random initialisation during the first few hundred steps. Buffers (e.g. the motion normalisation) are copied,
not averaged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EMA:
    """EMA shadow copies of a module's floating-point parameters.

    Args:
        model: the module being trained (its parameters are read after each step).
        decay: the asymptotic decay (0.999 = an average over roughly the last 1000 steps); 0 copies the weights.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow: dict[str, Tensor] = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.dtype.is_floating_point
        }

    def current_decay(self) -> float:
        k = self.num_updates
        return min(self.decay, (1.0 + k) / (10.0 + k))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current parameters into the average."""
        d = self.current_decay()
        params = dict(model.named_parameters())
        names = list(self.shadow)
        shadows = [self.shadow[n] for n in names]
        currents = [params[n].detach() for n in names]
        torch._foreach_lerp_(shadows, currents, 1.0 - d)  # shadow += (1 - d) (param - shadow)
        self.num_updates += 1

    def state_dict_for(self, model: nn.Module) -> dict[str, Tensor]:
        """The model's ``state_dict`` with every averaged parameter replaced by its EMA value (buffers as they are)."""
        sd = model.state_dict()
        return {k: (self.shadow[k] if k in self.shadow else v).detach() for k, v in sd.items()}

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        missing = sorted(set(self.shadow) - set(state["shadow"]))
        unexpected = sorted(set(state["shadow"]) - set(self.shadow))
        if missing or unexpected:
            raise KeyError(f"EMA state does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        with torch.no_grad():
            for k, v in state["shadow"].items():
                self.shadow[k].copy_(v)

    def to(self, device: torch.device | str) -> "EMA":
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

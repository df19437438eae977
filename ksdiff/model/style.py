"""Style from a reference clip (issue 15): a short clip of a person's own face motion -> a style vector.

The vector says what speech cannot: the person's resting face, how far their mouth moves, their head habits. The
encoder reads the reference motion normalised like the model's targets (B, Tr, C) and pools over time, so a
reference of any length works and the clip's own timing cannot be copied into the output:

    x (B, Tr, C) ──Conv1d(k) → GELU → Conv1d(k) → GELU──> h (B, Tr, H)
    [masked mean_t x, masked std_t x, masked mean_t h, masked std_t h] (B, 2C + 2H) ──Linear──> (B, R)

The per-channel mean is the resting face, the std the articulation amplitude and head-motion range; the
convolutions add short-time dynamics (how the mouth moves, not only how much). Each denoiser adds a projection of
the vector to its style token (:class:`ksdiff.model.denoiser.MotionDenoiser`); trained jointly through the
diffusion loss, with the reference dropped at ``model.denoiser.ref_drop_prob`` so the model also works without one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ksdiff.model.config import StyleEncoderConfig


def masked_moments(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation over time of ``x`` (B, T, F) on the frames where ``mask`` (B, T) is True; a
    reference with no valid frame gives zeros."""
    m = mask.to(x.dtype)[..., None]
    n = m.sum(1).clamp_min(1.0)
    mean = (x * m).sum(1) / n
    var = (((x - mean[:, None]) ** 2) * m).sum(1) / n
    return mean, torch.sqrt(var + 1e-6)


class StyleEncoder(nn.Module):
    """Reference motion (B, Tr, C) + mask (B, Tr) -> style vector (B, ``cfg.dim``)."""

    def __init__(self, channels: int, cfg: StyleEncoderConfig):
        super().__init__()
        k = int(cfg.kernel)
        self.conv = nn.Sequential(nn.Conv1d(channels, cfg.hidden, k, padding=k // 2), nn.GELU(),
                                  nn.Conv1d(cfg.hidden, cfg.hidden, k, padding=k // 2), nn.GELU())
        self.out = nn.Linear(2 * channels + 2 * cfg.hidden, cfg.dim)

    def forward(self, ref: Tensor, mask: Tensor) -> Tensor:
        h = self.conv((ref * mask.to(ref.dtype)[..., None]).transpose(1, 2)).transpose(1, 2)
        mx, sx = masked_moments(ref, mask)
        mh, sh = masked_moments(h, mask)
        return self.out(torch.cat([mx, sx, mh, sh], dim=-1))

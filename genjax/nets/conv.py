"""Small convolutional coupling conditioner for image flows (Flax linen, NHWC)."""

from __future__ import annotations

import flax.linen as nn

__all__ = ["CouplingConvNet"]


class CouplingConvNet(nn.Module):
    """Glow's coupling network NN(): conv3×3 → ReLU → conv1×1 → ReLU → zero-initialised conv3×3.

    Kingma & Dhariwal (2018), §3.3: the zero-initialised last convolution makes every
    coupling start as the identity.  Input ``(H, W, C)`` or ``(N, H, W, C)``; output has
    ``out_channels`` channels and the same spatial size.
    """

    hidden: int
    out_channels: int

    @nn.compact
    def __call__(self, x):
        single = x.ndim == 3
        h = x[None] if single else x
        h = nn.relu(nn.Conv(self.hidden, (3, 3))(h))
        h = nn.relu(nn.Conv(self.hidden, (1, 1))(h))
        zeros = nn.initializers.zeros
        h = nn.Conv(self.out_channels, (3, 3), kernel_init=zeros, bias_init=zeros)(h)
        return h[0] if single else h

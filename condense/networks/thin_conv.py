"""The first convolution of a network on one-channel images, in a form a CPU runs fast when
compiled.

A 3×3 convolution from one input channel to 128 does little arithmetic (9 multiply-adds per
output value) but writes a large output (``N × 128 × 32 × 32`` for Fashion-MNIST). oneDNN, the
CPU convolution library, runs it far below the speed of the wider layers, worst of all in bf16:
measured on the 2-core AMD EPYC CPU (docs/benchmarks.md), the compiled ConvNet's convolution
backward took 333 ms of a 256-image bf16 pass with the plain first convolution and 130 ms with
this one; the whole pass went from 2.0× to 3.5× the eager fp32 pass (fp32: 1.57× → 1.72×). With
three input channels (CIFAR) oneDNN has no such gap and this route was slower (1.9× vs 2.0×), so
networks build a :class:`ThinConv2d` for one-channel inputs only (:data:`MAX_THIN_CHANNELS`).

:class:`ThinConv2d` computes the same function as :class:`torch.nn.Conv2d` (it *is* one: same
parameters, same state-dict keys, same eager forward). Only inside a compiled graph on a CPU does
it take another route to the same sum:

.. math::

    y[n, o, h, w] = b[o] + \\sum_{c, i, j} W[o, c, i, j] \\, x_{pad}[n, c, h + i, w + j]
                  = b[o] + \\sum_{k} W'[o, k] \\, X[n, k, h, w],

where ``X: (N, C_in·kh·kw, H_out, W_out)`` stacks the ``C_in·kh·kw`` shifted copies of the padded
input (im2col, ``k = (c, i, j)``) and ``W' = W.reshape(C_out, C_in·kh·kw)``: one 1×1 convolution,
which oneDNN runs at full speed, fed by a copy the compiler fuses. The terms are the same; only
the order of summation differs (float rounding, tested in ``tests/condense/networks``).

Eager mode (the reference arithmetic, bit for bit the authors'), CUDA (cuDNN has no such gap,
unmeasured) and convolutions outside its scope (stride, dilation, groups, non-zero padding modes)
keep :meth:`torch.nn.Conv2d.forward`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ThinConv2d", "MAX_THIN_CHANNELS"]

#: input channels up to which a first convolution is built as a :class:`ThinConv2d`
MAX_THIN_CHANNELS = 1


class ThinConv2d(nn.Conv2d):
    """``nn.Conv2d`` (stride 1, zero padding) that runs as im2col + 1×1 convolution when compiled
    on a CPU. ``x: (N, C_in, H, W)`` -> ``(N, C_out, H + 2p − kh + 1, W + 2p − kw + 1)``."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling() and x.device.type == "cpu" and self._unfoldable():
            return self._im2col_forward(x)
        return super().forward(x)

    def _unfoldable(self) -> bool:
        return (
            self.groups == 1
            and self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
        )

    def _im2col_forward(self, x: Tensor) -> Tensor:
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        padded = F.pad(x, (pw, pw, ph, ph))
        h_out, w_out = padded.shape[2] - kh + 1, padded.shape[3] - kw + 1
        # k = (c, i, j) in the order of weight.reshape(C_out, C_in * kh * kw)
        columns = torch.cat(
            [
                padded[:, c : c + 1, i : i + h_out, j : j + w_out]
                for c in range(self.in_channels)
                for i in range(kh)
                for j in range(kw)
            ],
            dim=1,
        )
        weight = self.weight.reshape(self.out_channels, -1, 1, 1)
        return F.conv2d(columns, weight, self.bias)

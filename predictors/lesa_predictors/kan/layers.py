"""B-spline KAN layers, written in-house (efficient-KAN formulation, no grid update).

``BSplineKANLinear`` computes ``y = W_base · SiLU(x) + (W_spline ⊙ scaler) · B(x)`` where ``B(x)`` are
the ``G + k`` B-spline bases of order ``k`` of each input on a uniform grid of ``G`` intervals over
``grid_range``, extended by ``k`` knots on each side (Cox–de Boor recursion). Inside ``grid_range`` the
bases form a partition of unity; outside the extended grid they vanish and only the SiLU branch acts.

Initialisation follows efficient-kan (``Blealtan/efficient-kan``): Kaiming-uniform base weights with
``a = √5 · scale_base``; spline coefficients fitted by least squares to uniform noise of amplitude
``scale_noise / G`` at the grid points; Kaiming-uniform standalone spline scalers with
``a = √5 · scale_spline``. The grid is derived from the config, so it is a non-persistent buffer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F


def uniform_knots(grid_size: int, spline_order: int, grid_range: tuple[float, float],
                  device: torch.device | str | None = None) -> Tensor:
    """The ``G + 2k + 1`` knots ``lo + h·j`` for ``j = −k … G + k``, ``h = (hi − lo) / G`` (float32)."""
    lo, hi = grid_range
    h = (hi - lo) / grid_size
    j = torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float32, device=device)
    return j * h + lo


def bspline_bases(x: Tensor, grid: Tensor, spline_order: int) -> Tensor:
    """B-spline bases of order ``spline_order`` (Cox–de Boor).

    :param x: ``(N, in)`` inputs.
    :param grid: ``(in, G + 2k + 1)`` knots per input, ascending.
    :return: ``(N, in, G + k)`` basis values.
    """
    x = rearrange(x, "n i -> n i 1")
    bases = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)
    for p in range(1, spline_order + 1):
        left = (x - grid[:, : -(p + 1)]) / (grid[:, p:-1] - grid[:, : -(p + 1)])
        right = (grid[:, p + 1 :] - x) / (grid[:, p + 1 :] - grid[:, 1:-p])
        bases = left * bases[..., :-1] + right * bases[..., 1:]
    return bases


class BSplineKANLinear(nn.Module):
    """One KAN layer ``in_features → out_features`` (efficient-KAN ``KANLinear``, no bias, no grid update).

    Parameters: ``base_weight (out, in)``, ``spline_weight (out, in, G + k)``, ``spline_scaler (out, in)``:
    ``(G + k + 2) · in · out`` in total.
    """

    grid: Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        scale_noise: float = 0.1,
        scale_base: float = 1.0,
        scale_spline: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.grid_size = grid_size
        self.spline_order = spline_order
        knots = uniform_knots(grid_size, spline_order, grid_range)
        self.register_buffer("grid", knots.expand(in_features, -1).contiguous(), persistent=False)
        # the forward's closed form for a uniform grid (see uniform_bases)
        self._inv_h = grid_size / (grid_range[1] - grid_range[0])
        self._first_knot = float(uniform_knots(grid_size, spline_order, grid_range, device="cpu")[0])
        self.register_buffer("interval_index", torch.arange(grid_size + 2 * spline_order, dtype=torch.float32),
                             persistent=False)
        self._inv_factorial = 1.0 / math.factorial(spline_order)
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, grid_size + spline_order))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features))
        self.reset_parameters(scale_noise=scale_noise, scale_base=scale_base, scale_spline=scale_spline)

    @torch.no_grad()
    def reset_parameters(self, *, scale_noise: float, scale_base: float, scale_spline: float) -> None:
        if self.base_weight.is_meta:  # built on the meta device to learn its shapes: no values to set
            return
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * scale_base)
        # values at the G + 1 interior grid points, then least-squares spline coefficients through them
        points = self.grid[:, self.spline_order : -self.spline_order]  # (in, G + 1)
        noise = (torch.rand(self.grid_size + 1, self.in_features, self.out_features) - 0.5) * scale_noise
        noise = noise / self.grid_size
        self.spline_weight.copy_(self._curve_to_coeff(rearrange(points, "i g -> g i"), noise))
        nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5) * scale_spline)

    def _curve_to_coeff(self, x: Tensor, y: Tensor) -> Tensor:
        """Spline coefficients ``(out, in, G + k)`` whose curves pass (least squares) through ``y (M, in, out)``
        at ``x (M, in)``."""
        a = rearrange(bspline_bases(x, self.grid, self.spline_order), "m i c -> i m c")
        b = rearrange(y, "m i o -> i m o")
        solution = torch.linalg.lstsq(a.double(), b.double()).solution  # (in, G + k, out)
        return rearrange(solution, "i c o -> o i c").to(self.spline_weight.dtype)

    def uniform_bases(self, x: Tensor) -> Tensor:
        """:func:`bspline_bases` for this layer's uniform grid, in closed form: ``(N, in) → (N, in, G + k)``.

        With ``u = (x − g_0) / h`` and ``d_j = u − j`` the Cox–de Boor factors are ``d_j / p`` and
        ``(p + 1 − d_j) / p``, so ``B^p_j ∝ (p + 1)·B^{p−1}_{j+1} + d_j·(B^{p−1}_j − B^{p−1}_{j+1})``; the
        ``1 / k!`` is applied to the spline weights. The degree-0 interval is ``floor(u)``, computed once
        (so rounding can never select two intervals or none at a knot). About half the kernels of the
        general recursion (the forecast path runs three KANs per forecast).
        """
        u = torch.sub(x, self._first_knot).mul_(self._inv_h).unsqueeze(-1)  # (N, in, 1)
        index = self.interval_index.to(x.dtype)
        bases = (torch.floor(u) == index).to(x.dtype)  # (N, in, G + 2k)
        d = u - index
        for p in range(1, self.spline_order + 1):
            upper = bases[..., 1:]
            bases = torch.addcmul(upper * (p + 1), d[..., : upper.shape[-1]], bases[..., :-1] - upper)
        return bases

    def forward(self, x: Tensor) -> Tensor:
        """``(..., in) → (..., out)``."""
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        base = F.linear(F.silu(flat), self.base_weight)
        bases = rearrange(self.uniform_bases(flat), "n i c -> n (i c)")
        scaler = (self.spline_scaler * self._inv_factorial).unsqueeze(-1)
        weight = rearrange(self.spline_weight * scaler, "o i c -> o (i c)")
        out = torch.addmm(base, bases, weight.t())
        return out.reshape(*lead, self.out_features)


class KAN(nn.Module):
    """A stack of :class:`BSplineKANLinear` layers with widths ``widths`` (e.g. ``[S + 1, 256, 256, 1]``)."""

    def __init__(self, widths: Sequence[int], **layer_kwargs: Any) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"a KAN needs at least an input and an output width, got {list(widths)}")
        self.layers = nn.ModuleList(
            BSplineKANLinear(a, b, **layer_kwargs)
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

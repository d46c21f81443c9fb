"""Conformance tests every :class:`~lesa_core.interfaces.StageRouter` must pass."""

from __future__ import annotations

import pytest
import torch

from lesa_core.interfaces import StageRouter

GRID = [i / 1000 for i in range(1001)]


class RouterConformance:
    """Provide a ``router`` fixture."""

    def test_boundaries_strictly_descending(self, router: StageRouter) -> None:
        b = router.boundaries
        assert all(0.0 < x < 1.0 for x in b)
        assert all(x > y for x, y in zip(b, b[1:], strict=False))
        assert router.num_stages == len(b) + 1

    def test_total_and_monotone(self, router: StageRouter) -> None:
        stages = [router.route(t) for t in reversed(GRID)]  # from noise (t=1) to data (t=0)
        assert all(0 <= s < router.num_stages for s in stages)
        assert stages == sorted(stages), "stage must never decrease as t falls"
        assert stages[0] == 0 and stages[-1] == router.num_stages - 1

    def test_tensor_route_matches_host_route(self, router: StageRouter) -> None:
        t = torch.tensor(GRID)
        assert router.route_tensor(t).tolist() == [router.route(x) for x in t.tolist()]

    @pytest.mark.parametrize("t", [0.0, 1.0])
    def test_endpoints(self, router: StageRouter, t: float) -> None:
        assert router.route(t) in range(router.num_stages)

"""Conformance tests every :class:`~lesa_core.interfaces.CachePolicy` must pass."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lesa_core.interfaces import CachePolicy, Decision, StepInfo

PolicyFactory = Callable[[], CachePolicy]


class PolicyConformance:
    """Provide a ``policy_factory`` fixture returning a fresh policy (same config each call)."""

    @pytest.mark.parametrize("num_steps", [1, 4, 28, 50])
    def test_deterministic(self, policy_factory: PolicyFactory, num_steps: int) -> None:
        assert policy_factory().schedule(num_steps) == policy_factory().schedule(num_steps)

    def test_reset_restores_initial_behaviour(self, policy_factory: PolicyFactory) -> None:
        policy = policy_factory()
        first = [policy.decide(StepInfo(i, None, 50)) for i in range(50)]
        for i in range(17):  # leave it mid-trajectory
            policy.decide(StepInfo(i, None, 50))
        policy.reset()
        assert [policy.decide(StepInfo(i, None, 50)) for i in range(50)] == first

    def test_first_step_computes(self, policy_factory: PolicyFactory) -> None:
        """Nothing can be forecast before a single feature exists."""
        assert policy_factory().schedule(10)[0] is Decision.COMPUTE

    def test_decisions_are_decisions(self, policy_factory: PolicyFactory) -> None:
        assert all(isinstance(d, Decision) for d in policy_factory().schedule(50))

"""The generic adapter (``adapter: generic``) on diffusers families it was not written for, and the SD3
adapter, through the whole adapter conformance suite (training smoke test included); and the generic
adapter's refusal of a model whose derived declarations it cannot prove."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from lesa_core import attach
from lesa_core.errors import AttachError
from lesa_core.plugins import PluginHost
from lesa_core.testing import tiny
from lesa_core.testing.adapters import NUM_STEPS, AdapterConformance, drive

pytestmark = pytest.mark.integration

GENERIC_FAMILIES = {
    "pixart": tiny.tiny_pixart_transformer,
    "sana": tiny.tiny_sana_transformer,
    "lumina2": tiny.tiny_lumina2_transformer,
    "cogview4": tiny.tiny_cogview4_transformer,
}


def _host() -> PluginHost:
    import lesa_adapters.generic
    import lesa_adapters.sd3
    import lesa_predictors.kan
    import lesa_predictors.taylor
    import lesa_schedulers.policies.interval
    import lesa_schedulers.routers.threshold

    return PluginHost.create(
        autoload=False,
        plugins=[
            lesa_predictors.taylor,
            lesa_predictors.kan,
            lesa_schedulers.policies.interval,
            lesa_schedulers.routers.threshold,
            lesa_adapters.sd3,
            lesa_adapters.generic,
        ],
    )


HOST = _host()


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread."""


@pytest.mark.parametrize("family", sorted(GENERIC_FAMILIES))
class TestGenericAdapter(AdapterConformance):
    adapter_name = "generic"

    @pytest.fixture
    def adapter_host(self) -> PluginHost:
        return HOST

    @pytest.fixture
    def adapter_model(self, family: str) -> nn.Module:
        return GENERIC_FAMILIES[family]()

    @pytest.fixture
    def adapter_inputs(self, adapter_model: nn.Module) -> dict[str, Any]:
        return tiny.transformer_inputs(adapter_model, batch=2, height=8, width=8)

    def test_no_adapter_claims_it_unless_named(self, adapter_model: nn.Module) -> None:
        from lesa_core.errors import UnsupportedModelError

        with pytest.raises(UnsupportedModelError):
            HOST.resolve_adapter(adapter_model)

    def test_exact_full_step_count_and_n_1_identity(
        self, adapter_model: nn.Module, adapter_inputs: dict[str, Any], adapter: Any
    ) -> None:
        """Through a 50-step loop: N = 7 (warm-up 3, step 3 forced) runs exactly 10 full passes; N = 1 runs
        every step and returns the model's own outputs bit for bit; after ``remove()`` too."""
        vanilla = drive(adapter_model, adapter, adapter_inputs, num_steps=50)
        config = {
            "adapter": "generic",
            "predictor": {"name": "taylor", "order": 1},
            "policy": {"name": "interval", "interval": 7, "warmup": 3, "force_full": [3]},
        }
        with attach(adapter_model, config, host=HOST) as handle:
            drive(adapter_model, adapter, adapter_inputs, num_steps=50)
            (stats,) = handle.stats().values()
        assert stats["full_steps"] == 10 and stats["forecast_steps"] == 40
        with attach(
            adapter_model, {**config, "policy": {"name": "interval", "interval": 1}}, host=HOST
        ) as handle:
            exact = drive(adapter_model, adapter, adapter_inputs, num_steps=50)
            (stats,) = handle.stats().values()
        assert stats["full_steps"] == 50
        assert all(torch.equal(a, b) for a, b in zip(vanilla, exact, strict=True))
        after = drive(adapter_model, adapter, adapter_inputs, num_steps=50)
        assert all(torch.equal(a, b) for a, b in zip(vanilla, after, strict=True))


class TestSD3Adapter(AdapterConformance):
    @pytest.fixture
    def adapter_host(self) -> PluginHost:
        return HOST

    @pytest.fixture
    def adapter_model(self) -> nn.Module:
        return tiny.tiny_sd3_transformer()

    @pytest.fixture
    def adapter_inputs(self, adapter_model: nn.Module) -> dict[str, Any]:
        return tiny.transformer_inputs(adapter_model, batch=2, height=8, width=8)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, 4)
        self.text = nn.Linear(4, 4)

    def forward(
        self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        return self.hidden(hidden_states) + encoder_hidden_states.mean(1, keepdim=True), self.text(
            encoder_hidden_states
        )


class _TextAfterBody(nn.Module):
    """A DiT whose head reads the text stream the body produced: passing the body through cannot reproduce it."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Block(), _Block()])
        self.proj_out = nn.Linear(4, 4)

    def forward(
        self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        text = encoder_hidden_states
        for block in self.blocks:
            hidden_states, text = block(hidden_states, text)
        return self.proj_out(hidden_states + text.mean(1, keepdim=True)) * timestep[:, None, None]


def test_generic_refuses_what_it_cannot_prove() -> None:
    torch.manual_seed(0)
    model = _TextAfterBody().eval()
    inputs = {
        "hidden_states": torch.randn(1, 5, 4),
        "timestep": torch.ones(1),
        "encoder_hidden_states": torch.randn(1, 3, 4),
    }
    with torch.no_grad():
        vanilla = model(**inputs)
    with (
        attach(model, {"adapter": "generic", "policy": {"name": "interval", "interval": 2}}, host=HOST),
        torch.no_grad(),
        pytest.raises(AttachError, match=r"a forecast step fed the real tap does not reproduce"),
    ):
        model(**inputs)
    with torch.no_grad():
        assert torch.equal(model(**inputs), vanilla)  # refused and removed: the model is untouched
    assert "forward" not in model.__dict__ and NUM_STEPS


def test_generic_on_a_batched_guidance_pipeline_counts_and_trains(tmp_path) -> None:
    """``adapter: generic`` on a real PixArt-Σ pipeline (batched [uncond, cond], no ``cache_context``):
    exactly 10 body runs of 50 at N = 7 (counted inside the block; + 2 for the first call's probe and
    proof), N = 1 bit-identical, and training stores and trains both guidance branches."""
    from lesa_core.trainer import PipelineRunner, TrajectoryStore, train

    pipe = tiny.tiny_pixart_sigma_pipeline()
    pipe.set_progress_bar_config(disable=True)
    call = {
        "height": 16,
        "width": 16,
        "guidance_scale": 4.5,
        "output_type": "latent",
        "clean_caption": False,
        "use_resolution_binning": False,
        "max_sequence_length": 16,
    }
    runs: list[int] = []
    pipe.transformer.transformer_blocks[0].attn1.register_forward_pre_hook(lambda m, a: runs.append(1))

    def sample(config: dict[str, Any] | None) -> tuple[torch.Tensor, dict[str, Any]]:
        runs.clear()
        generator = torch.Generator().manual_seed(0)
        if config is None:
            return pipe("a red square", num_inference_steps=50, generator=generator, **call).images, {}
        with attach(pipe, config, host=HOST) as handle:
            out = pipe("a red square", num_inference_steps=50, generator=generator, **call).images
        return out, handle.stats()["default"]

    vanilla, _ = sample(None)
    assert len(runs) == 50
    config = {
        "adapter": "generic",
        "predictor": {"name": "taylor", "order": 1},
        "policy": {"name": "interval", "interval": 7, "warmup": 3, "force_full": [3]},
    }
    _, stats = sample(config)
    assert stats["full_steps"] == 10 and stats["row_groups"] == ["uncond", "cond"] and len(runs) == 10 + 2
    exact, stats = sample({**config, "policy": {"name": "interval", "interval": 1}})
    assert stats["full_steps"] == 50 and len(runs) == 50 + 2 and torch.equal(exact, vanilla)

    training = {
        "adapter": "generic",
        "predictor": {"name": "kan", "taps": 2, "hidden": [4]},
        "policy": {"name": "interval", "interval": 3, "warmup": 2, "force_full": []},
        "training": {
            "num_steps": 8,
            "stage1": {"epochs": 1, "batch_size": 2},
            "stage2": {"epochs": 1, "batch_size": 2},
        },
    }
    runner = PipelineRunner(pipe, **{k: v for k, v in call.items() if k != "output_type"})
    _, report = train(
        pipe,
        training,
        ["a red square", "a blue circle"],
        runner=runner,
        out=tmp_path / "bundle",
        data_dir=tmp_path / "data",
        host=HOST,
        show_progress=False,
    )
    taps = TrajectoryStore(tmp_path / "data" / "trajectories").load()
    assert sorted(taps) == ["cond", "uncond"] and taps["cond"].shape[:2] == (2, 8)
    assert not torch.allclose(taps["cond"], taps["uncond"])
    assert len(report.losses["stage2"]) == 1

"""The public declarative API of the diffusers engine: what an adapter declares, as data.

* :class:`DiffusersBackbone` — subclass it and declare, as class attributes, which model classes it
  claims, the block lists forming the body, where each block class takes and returns its streams
  (:class:`BlockIO`), its taps (:class:`BodyOutputTap`, :class:`ModuleOutputTap`,
  :class:`ModelOutputTap`) and the timestep scale. ``attach`` is inherited.
* :func:`standard_taps`, the usual taps of a DiT.

This module does not import diffusers (so loading the adapter plugins stays cheap); ``attach`` imports
the engine's hooks, and with them diffusers, when a runtime attaches.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from lesa_adapters.engine.arguments import argument
from lesa_core.errors import AttachError
from lesa_core.interfaces import BackboneAdapter, RuntimeComponents, TapSpec

if TYPE_CHECKING:
    from lesa_adapters.engine.attachment import DiffusersAttachment

__all__ = ["BlockIO", "BodyOutputTap", "DiffusersBackbone", "ModelOutputTap", "ModuleOutputTap",
           "standard_taps"]


@dataclass(frozen=True)
class BlockIO:
    """Where one block class takes and returns its two streams (image tokens and text tokens).

    :ivar hidden_out: position of the image stream in the block's returned tuple; ``None`` if the
        block returns the image-stream tensor alone (Wan).
    :ivar encoder_out: position of the text stream in the returned tuple; ``None`` if not returned.
    :ivar hidden_arg: keyword name of the image-stream input.
    :ivar hidden_pos: its position when passed positionally (gradient checkpointing passes all
        arguments positionally).
    :ivar encoder_arg: keyword name of the text-stream input, if any.
    :ivar encoder_pos: its position when passed positionally.
    """

    hidden_out: int | None
    encoder_out: int | None = None
    hidden_arg: str = "hidden_states"
    hidden_pos: int = 0
    encoder_arg: str | None = "encoder_hidden_states"
    encoder_pos: int | None = 1

    def __post_init__(self) -> None:
        if self.hidden_out is None:
            if self.encoder_out is not None:
                raise ValueError("a block that returns the image stream alone cannot return the text stream")
        elif self.encoder_out is not None:
            if {self.hidden_out, self.encoder_out} != {0, 1}:
                raise ValueError("a two-stream block must return its streams at positions 0 and 1")
            if self.encoder_arg is None:
                raise ValueError("a block that returns the text stream must take it (encoder_arg)")
        elif self.hidden_out != 0:
            raise ValueError("a one-stream tuple must hold the image stream at position 0")

    def hidden_input(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """The image-stream argument of one call."""
        return argument(args, kwargs, self.hidden_arg, self.hidden_pos)

    def passthrough(self, hidden: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """What the block returns on a forecast step: ``hidden`` and its text-stream input, in place."""
        if self.hidden_out is None:
            return hidden
        if self.encoder_out is None:
            return (hidden,)
        assert self.encoder_arg is not None
        encoder = argument(args, kwargs, self.encoder_arg, self.encoder_pos)
        return (hidden, encoder) if self.hidden_out == 0 else (encoder, hidden)

    def hidden_output(self, output: Any) -> Tensor:
        """The image stream of a block's real output."""
        return output if self.hidden_out is None else output[self.hidden_out]


@dataclass(frozen=True)
class BodyOutputTap(TapSpec):
    """The image-stream output of the last body block, before the output norm (LESA's FLUX tap).

    :ivar forecast_computes: what a forecast step still runs (documentation).
    """

    forecast_computes: str = "the stem (for the timestep embedding the head needs) and the head"


@dataclass(frozen=True)
class ModuleOutputTap(TapSpec):
    """The output of one submodule of the head, e.g. ``norm_out`` (LESA's Qwen-Image tap).

    :ivar module: dotted name of the submodule (``model.get_submodule(module)``).
    :ivar forecast_computes: what a forecast step still runs (documentation).
    :ivar head: dotted name of the submodule that alone maps this tap to the model output, token-wise
        and without conditioning (``proj_out`` after ``norm_out``), or ``None`` if the rest of the head
        is more than that (see :meth:`BackboneAdapter.tap_head`).
    """

    module: str = "norm_out"
    forecast_computes: str = "the stem and the part of the head after the tapped module"
    head: str | None = None


@dataclass(frozen=True)
class ModelOutputTap(TapSpec):
    """The model output (LESA's HunyuanVideo tap): a forecast step skips the whole forward.

    :ivar forecast_computes: what a forecast step still runs (documentation).
    """

    forecast_computes: str = "nothing: the forecast is returned as the model output"


def standard_taps(hidden: bool = True, normed: str | None = "norm_out", output: bool = True,
                  head: str | None = "proj_out") -> dict[str, TapSpec]:
    """The usual taps of a DiT: ``hidden`` (last block), ``normed`` (after ``normed``), ``output``.

    ``head`` names the output projection that alone follows ``normed`` (``None``: something else does,
    e.g. a reshaping the projection's token layout does not match).
    """
    taps: dict[str, TapSpec] = {}
    if hidden:
        taps["hidden"] = BodyOutputTap(
            "hidden", "image-token hidden state after the last body block, before the output norm")
    if normed is not None:
        taps["normed"] = ModuleOutputTap(
            "normed", f"hidden state after `{normed}` (output norm and modulation), before `proj_out`",
            module=normed, head=head)
    if output:
        taps["output"] = ModelOutputTap("output", "the model output (the velocity), in the model's layout")
    return taps


def _identity(feature: Tensor) -> Tensor:
    return feature


def _loaded_class(path: str) -> type | None:
    """The class ``package.module:Name`` if its top-level package is already imported, else ``None``.

    An instance of a class whose package was never imported cannot exist, so ``claims`` never
    imports a heavy package just to answer "no".
    """
    module_name, _, attr = path.partition(":")
    if module_name.split(".")[0] not in sys.modules:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    found = getattr(module, attr, None)
    return found if isinstance(found, type) else None


class DiffusersBackbone(BackboneAdapter):
    """Declarative adapter base for diffusers transformers; subclasses declare data, not code.

    :cvar model_classes: the classes this adapter claims, as ``"package.module:ClassName"``
        (checked with ``isinstance``, subclasses included).
    :cvar body: attribute names of the ``nn.ModuleList`` s forming the body, in execution order.
    :cvar block_io: per block class name (any class in the block's MRO), where it takes and
        returns its streams.
    :cvar forecast_skips: stem submodules whose output only feeds the body; on forecast steps they
        return their first argument instead of computing (the value is never used by the head).
    :cvar output_channels_first: the model output is ``(B, C, ...)`` (video models) rather than
        ``(B, tokens, C)``; decides :meth:`output_channels`.
    :cvar taps: the offered taps (:func:`standard_taps` by default); the kind of each
        :class:`TapSpec` subclass decides how the runtime implements it.
    :cvar probe_blocks: the probe point a probe-conditioned predictor reads when its config names none:
        the hidden stream (``BlockIO.hidden_output``) after the first k body blocks. Default 1, the first
        block's output (FirstBlockCache's signal), so every adapter offers a probe without code; override
        it only for a body whose first block says little on its own.
    """

    model_classes: ClassVar[tuple[str, ...]] = ()
    body: ClassVar[tuple[str, ...]] = ()
    block_io: ClassVar[Mapping[str, BlockIO]] = {}
    forecast_skips: ClassVar[tuple[str, ...]] = ()
    output_channels_first: ClassVar[bool] = False
    taps: ClassVar[Mapping[str, TapSpec]] = standard_taps()
    default_tap: ClassVar[str] = "hidden"
    probe_blocks: ClassVar[int] = 1

    # -- identity -----------------------------------------------------------------------------
    @classmethod
    def claims(cls, model: Any) -> bool:
        for path in cls.model_classes:
            klass = _loaded_class(path)
            if klass is not None and isinstance(model, klass):
                return True
        return False

    @classmethod
    def resolve(cls, model: Any) -> type[DiffusersBackbone] | None:
        """``cls`` if it claims ``model``, else ``None``: the body of a ``lesa_resolve_adapter`` hook."""
        return cls if cls.claims(model) else None

    # -- structure ----------------------------------------------------------------------------
    def body_blocks(self) -> list[nn.Module]:
        """Every body block, in execution order.

        :raises AttachError: if a declared block list is missing or not an ``nn.ModuleList``.
        """
        blocks: list[nn.Module] = []
        for name in self.body:
            stack = getattr(self.model, name, None)
            if not isinstance(stack, nn.ModuleList):
                raise AttachError(
                    f"{type(self).__name__} declares body list '{name}', but {type(self.model).__qualname__} "
                    f"has no nn.ModuleList of that name; fix `body` ({', '.join(self.body)})"
                )
            blocks.extend(stack)
        if not blocks:
            raise AttachError(f"{type(self.model).__qualname__} has no body blocks in {list(self.body)}")
        return blocks

    def check_probe(self, requested: int | None) -> int:
        """k, the body blocks that run on a probe-conditioned forecast step: ``requested`` (a predictor's
        ``probe_blocks``), else the adapter's declared :attr:`probe_blocks`.

        :raises AttachError: if k is not between 1 and the number of body blocks − 1 (a probe through the
            whole body would be a full pass).
        """
        k = self.probe_blocks if requested is None else int(requested)
        count = len(self.body_blocks())
        if not 1 <= k < count:
            raise AttachError(
                f"probe point of {k} body block(s) for {type(self.model).__qualname__}, which has {count}: choose "
                f"probe_blocks between 1 and {count - 1} in the predictor config (or leave it unset for the "
                f"adapter's default, {self.probe_blocks})"
            )
        return k

    def io_for(self, block: nn.Module) -> BlockIO:
        """The :class:`BlockIO` of ``block``'s class (looked up along its MRO by class name).

        :raises AttachError: naming the class and the declared ones.
        """
        for klass in type(block).__mro__:
            io = self.block_io.get(klass.__name__)
            if io is not None:
                return io
        raise AttachError(
            f"{type(self).__name__} has no BlockIO for block class {type(block).__qualname__}; declared: "
            f"{', '.join(sorted(self.block_io)) or '(none)'}. Add it to `block_io`."
        )

    def hidden_size(self) -> int:
        """Width of the body's hidden state (``num_attention_heads × attention_head_dim``)."""
        config = getattr(self.model, "config", None)
        heads = getattr(config, "num_attention_heads", None)
        head_dim = getattr(config, "attention_head_dim", None)
        if heads is not None and head_dim is not None:
            return int(heads) * int(head_dim)
        inner = getattr(self.model, "inner_dim", None)
        if inner is None:
            raise AttachError(f"cannot tell the hidden size of {type(self.model).__qualname__}; override hidden_size()")
        return int(inner)

    def output_channels(self) -> int:
        """Channels of the model output: ``config.out_channels`` for channel-first outputs, else the
        width of ``proj_out``."""
        config = getattr(self.model, "config", None)
        if self.output_channels_first:
            out = getattr(config, "out_channels", None) or getattr(config, "in_channels", None)
            if out is None:
                raise AttachError(f"cannot tell the output channels of {type(self.model).__qualname__}")
            return int(out)
        proj = getattr(self.model, "proj_out", None)
        if isinstance(proj, nn.Linear):
            return int(proj.out_features)
        raise AttachError(f"cannot tell the output width of {type(self.model).__qualname__}; override output_channels()")

    def tap_channels(self, tap: str) -> int:
        spec = self.taps[self.check_tap(tap)]
        return self.output_channels() if isinstance(spec, ModelOutputTap) else self.hidden_size()

    def tap_is_token_major(self, tap: str) -> bool:
        spec = self.taps[self.check_tap(tap)]
        return not (isinstance(spec, ModelOutputTap) and self.output_channels_first)

    def guidance_rows(self, latent: Tensor) -> tuple[tuple[str, slice], ...] | None:
        """The rows of each :attr:`batched_guidance` branch in a call whose ``latent`` holds them, else
        ``None``: the batch must split into that many chunks that are equal bit for bit (a pipeline
        concatenates the same latents once per branch). One comparison, on a trajectory's first call."""
        branches = len(self.batched_guidance)
        batch = latent.shape[0] if latent.ndim else 0
        if branches < 2 or batch < branches or batch % branches:
            return None
        chunks = latent.chunk(branches)
        if not all(torch.equal(chunks[0], chunk) for chunk in chunks[1:]):
            return None
        size = batch // branches
        return tuple((name, slice(i * size, (i + 1) * size)) for i, name in enumerate(self.batched_guidance))

    def tap_head(self, tap: str) -> Callable[[Tensor], Tensor] | None:
        spec = self.taps[self.check_tap(tap)]
        if isinstance(spec, ModelOutputTap):
            return _identity
        if isinstance(spec, ModuleOutputTap) and spec.head is not None:
            head: Callable[[Tensor], Tensor] = self.model.get_submodule(spec.head)
            return head
        return None

    # -- time and outputs -----------------------------------------------------------------------
    def latent_tensor(self, latent: Any) -> Any:
        """The tensor that stands for the forward's latent argument: its shape and device identify the
        trajectory (a new shape starts a new one). The argument itself by default; override for models
        that take something else (Z-Image takes a list of per-sample tensors). A non-tensor result is
        refused by the runtime with a :class:`~lesa_core.errors.ForwardInputError`."""
        return latent

    def step_time(self, timestep: Any) -> Tensor:
        """``()`` float32 flow time of one forward call, on the timestep's device, without a sync.

        The batch is assumed to share one time; the first sample's is used. Override for models whose
        ``timestep`` is per token (Wan 2.2 TI2V).
        """
        if not isinstance(timestep, Tensor):
            timestep = torch.tensor(float(timestep))
        return self.time_from_timestep(timestep).reshape(-1)[0]

    def wrap_output(self, sample: Tensor, return_dict: bool) -> Any:
        """The model's return value for output ``sample`` (``Transformer2DModelOutput`` or a 1-tuple)."""
        if not return_dict:
            return (sample,)
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        return Transformer2DModelOutput(sample=sample)

    def unwrap_output(self, output: Any) -> Tensor:
        """The output tensor of a real forward's return value (inverse of :meth:`wrap_output`)."""
        return output if isinstance(output, Tensor) else output[0]

    # -- attaching ---------------------------------------------------------------------------
    def attach(self, components: RuntimeComponents) -> DiffusersAttachment:
        """Attach the engine to :attr:`model` (imports the hooks, and with them diffusers)."""
        from lesa_adapters.engine.attachment import DiffusersAttachment

        return DiffusersAttachment(self, components)

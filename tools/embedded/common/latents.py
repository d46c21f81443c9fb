"""The latent bank: training images / videos encoded once by the frozen VAE, so that the transformer's
steps do not pay for the encoder; batches are drawn from it with their own generator."""

from __future__ import annotations

from collections.abc import Callable

import torch


@torch.no_grad()
def encode_bank(
    draw: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    encode: Callable[[torch.Tensor], torch.Tensor],
    size: int,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` latents (fp32) and their caption indices: ``draw(chunk)`` gives (inputs, caption indices),
    ``encode`` maps inputs to latents; chunks are drawn until ``size`` is reached, the excess cut."""
    bank_z, bank_idx = [], []
    for _ in range(0, size, chunk):
        x0, idx = draw(chunk)
        bank_z.append(encode(x0).float())
        bank_idx.append(idx)
    return torch.cat(bank_z)[:size], torch.cat(bank_idx)[:size]


def draw_rows(bank_size: int, batch: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """``batch`` bank rows drawn with replacement from ``gen`` (a CPU generator), moved to ``device``."""
    return torch.randint(bank_size, (batch,), generator=gen).to(device)


def bank_loss(
    bank: torch.Tensor,
    captions: torch.Tensor,
    batch: int,
    gen: torch.Generator,
    device: torch.device,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Callable[[], torch.Tensor]:
    """A step's loss: ``loss(latents, caption indices)`` on ``batch`` rows drawn from the bank."""

    def step_loss() -> torch.Tensor:
        rows = draw_rows(len(bank), batch, gen, device)
        return loss(bank[rows], captions[rows])

    return step_loss

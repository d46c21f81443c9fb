"""The command-line flags every training tool shares (in this order, so each tool's ``--help`` lists them
first); each tool adds its own after them."""

from __future__ import annotations

import argparse

import torch


def training_parser(doc: str | None, budget_seconds: float, vae_fraction: float) -> argparse.ArgumentParser:
    """``--skeleton --out --device --seed --budget-seconds --vae-fraction --vae-steps --steps``, with this
    model's default budget and VAE share of it."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skeleton", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--budget-seconds", type=float, default=budget_seconds, help="VAE + transformer training time"
    )
    p.add_argument("--vae-fraction", type=float, default=vae_fraction)
    p.add_argument("--vae-steps", type=int, default=None, help="fixed VAE steps (overrides the budget)")
    p.add_argument("--steps", type=int, default=None, help="fixed transformer steps (overrides the budget)")
    return p

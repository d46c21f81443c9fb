"""Cache policies: per denoising step, compute the transformer body or forecast it."""

"""What the three embedded models' build / train / evaluate tools share (one job per module).

* :mod:`.schedule`: the learning-rate schedule, the step budget, the σ shifts of rectified-flow training.
* :mod:`.runlog`: the timestamped console log and the ``losses.csv`` writer.
* :mod:`.optim`: AdamW as the tools configure it, one clipped optimiser step, the EMA of the weights.
* :mod:`.weights`: fp16 safetensors + ``meta.json`` weight folders: writing, and loading into networks.
* :mod:`.latents`: the latent bank (training images / videos encoded once) and batches drawn from it.
* :mod:`.folder`: the skeleton (configs + tokenizers, no weights) and the assembled fp16 pipeline folder.
* :mod:`.bpe`: the byte-level BPE tokenizer trained on a prompt template and the captions.
* :mod:`.sampling`: loading a pipeline folder and sampling held-out captions with fixed seeds.
* :mod:`.trajectory`: the per-step dynamics of a tapped feature and their means per LESA stage.
* :mod:`.plotting`: the trajectory figure.
* :mod:`.family`: the per-family results table (full, lesa, mlp, Taylor, reuse) and paired Δ ± s.e.

Model-specific parts (architectures, data, scorers, text encoders, loss details) stay in each model's folder.
"""

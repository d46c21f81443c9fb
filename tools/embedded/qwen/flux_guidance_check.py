"""The guidance cross-check on the FLUX-class model: reuse vs TaylorSeer-1 at N = 7 without CFG and at CFG 2.

``python tools/embedded/qwen/flux_guidance_check.py`` (16 held-out captions, seeds 10000 + i; the
numbers are in docs/embedded-model.md, "TaylorSeer-1 against reuse").
"""

import json
import math
import time

import torch

from lesa_embedded.flux import EMBEDDED_CALL_DEFAULTS, heldout_prompts, load_embedded_pipeline
from lesa_workflows.evaluate import evaluate

pipe = load_embedded_pipeline()
caps = heldout_prompts(16)
for label, call in (
    ("no CFG", {"true_cfg_scale": 1.0, "negative_prompt": None}),
    ("CFG 2", {"true_cfg_scale": 2.0}),
):
    policy = {"name": "interval", "interval": 7, "warmup": 3}
    base = {"router": {"name": "threshold", "boundaries": [0.9, 0.5]}, "policy": policy, "tap": "normed"}
    methods = {
        "full": None,
        **{
            n: {**base, "predictor": {"name": "taylor", "order": o}}
            for o, n in ((0, "reuse"), (1, "taylor1"))
        },
    }
    kw = {k: v for k, v in {**EMBEDDED_CALL_DEFAULTS, **call}.items() if k != "num_inference_steps"}
    t0 = time.time()
    rs = {
        r.name: r
        for r in evaluate(
            pipe,
            methods,
            caps,
            [10000 + i for i in range(16)],
            num_steps=50,
            call_kwargs=kw,
            batch_size=8,
            show_progress=False,
            reference_tap="normed",
        )
    }
    d = torch.tensor(rs["taylor1"].psnr_per_image) - torch.tensor(rs["reuse"].psnr_per_image)
    print(
        json.dumps(
            {
                "model": "embedded (FLUX-class)",
                "setting": label,
                "reuse": round(rs["reuse"].psnr, 2),
                "taylor1": round(rs["taylor1"].psnr, 2),
                "delta": round(float(d.mean()), 2),
                "se": round(float(d.std() / math.sqrt(len(d))), 2),
                "seconds": round(time.time() - t0),
            }
        ),
        flush=True,
    )

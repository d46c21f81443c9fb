"""Measure a guidance-distilled student (``tools.embedded.flux.distill``) beside its CFG teacher.

::

    python -m tools.embedded.flux.distill_check --student DISTILLED/transformer --prompts 64 --out check.json

For the shipped teacher (true CFG 4, two transformer calls per step) and the student (guidance
embedding 4, one call per step), on held-out captions spread over the held-out set (seeds 10000 + i):
full compute's prompt adherence, the student's PSNR against the teacher's image, and reuse / Taylor-1 /
Taylor-2 at interval N (E = 3, tap ``normed``, threshold router [0.9, 0.5]) against each model's own
full-compute image, with the paired per-image taylor1 − reuse Δ ± s.e.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from lesa_embedded.flux import EMBEDDED_CALL_DEFAULTS, heldout_prompts, load_embedded_pipeline
from lesa_embedded.flux.adherence import score_adherence
from lesa_workflows.bench.zoo import paired
from lesa_workflows.evaluate import evaluate


def measure(pipe: Any, call: dict[str, Any], prompts: list[str], seeds: list[int], interval: int) -> dict[str, Any]:
    """Full compute's images and adherence, and reuse / Taylor-1 / Taylor-2 at ``interval``."""
    base = {"router": {"name": "threshold", "boundaries": [0.9, 0.5]}, "tap": "normed",
            "policy": {"name": "interval", "interval": interval, "warmup": 3}}
    methods: dict[str, Any] = {"full": None}
    methods.update({name: {**base, "predictor": {"name": "taylor", "order": order}}
                    for order, name in ((0, "reuse"), (1, "taylor1"), (2, "taylor2"))})
    kw = {k: v for k, v in call.items() if k != "num_inference_steps"}
    results = {r.name: r for r in evaluate(pipe, methods, prompts, seeds, num_steps=50, call_kwargs=kw,
                                            batch_size=8, show_progress=True, reference_tap="normed")}
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    with torch.no_grad():
        images = torch.cat([pipe(prompts[i : i + 8], generator=gens[i : i + 8], output_type="pt", **call).images.float()
                            for i in range(0, len(prompts), 8)])
    out: dict[str, Any] = {"adherence": round(float(score_adherence(images, prompts).match.float().mean()), 4)}
    out.update({name: round(results[name].psnr, 2) for name in ("reuse", "taylor1", "taylor2")})
    mean, se = paired(results["taylor1"].psnr_per_image, results["reuse"].psnr_per_image)
    out["taylor1_minus_reuse"] = (round(mean, 2), round(se, 2))
    out["images"] = images
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", required=True, help="the distilled transformer folder")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--interval", type=int, default=7)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args(argv)
    from diffusers import FluxTransformer2DModel

    prompts = heldout_prompts(args.prompts)
    seeds = [10000 + i for i in range(len(prompts))]
    t0 = time.time()
    teacher = load_embedded_pipeline()
    report: dict[str, Any] = {"prompts": len(prompts), "interval": args.interval}
    of_teacher = measure(teacher, dict(EMBEDDED_CALL_DEFAULTS), prompts, seeds, args.interval)
    teacher.transformer = FluxTransformer2DModel.from_pretrained(args.student, dtype=torch.float32, local_files_only=True).eval()
    student_call = {**EMBEDDED_CALL_DEFAULTS, "true_cfg_scale": 1.0, "negative_prompt": None, "guidance_scale": args.guidance}
    of_student = measure(teacher, student_call, prompts, seeds, args.interval)
    t_img, s_img = of_teacher.pop("images"), of_student.pop("images")
    report["teacher (true CFG 4)"] = of_teacher
    report[f"student (guidance {args.guidance:g})"] = of_student
    mse = ((t_img - s_img) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    report["student_vs_teacher_psnr"] = round(float((10 * torch.log10(1 / mse)).mean()), 2)
    report["seconds"] = round(time.time() - t0)
    text = json.dumps(report, indent=2)
    print(text, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return report


if __name__ == "__main__":
    main()

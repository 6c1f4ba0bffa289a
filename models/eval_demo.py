"""Prompt-adherence evaluation of the ras-demo model (models/train_demo.py).

Generates every held-out prompt of demo_prompts.json with diffusers'
`StableDiffusion3Pipeline.from_pretrained(folder)` (no T5: model_index.json has
text_encoder_3 = tokenizer_3 = [null, null]), one fixed seed per prompt (seed + index,
a CPU torch.Generator, so every device draws the same initial noise), and checks the image.

The checker (`check_image`; its numbers are in demo_palette.json under "checker", so a
port reads the same ones), on the 8-bit RGB image of W x H pixels:
  1. background: the per-channel median of all pixels within `border_px` (4) of the image
     edge; its name is the nearest palette colour (Euclidean distance in RGB 0..255).
  2. object pixels: the pixels whose RGB distance from that median (not from the palette
     colour) is greater than `object_threshold` (48). Fewer than `min_object_px` (100) of
     them: no object (object colour and position are then wrong).
  3. the object's core: the object pixels whose distance from the background median is
     at least the median of those distances (the farther half; a blurry edge, a blend of
     the two colours, or faint background artefacts would otherwise decide the colour of
     a small object or pull its centroid).
     object colour: the nearest palette colour to the per-channel median of the core.
  4. position: the centroid (mean x, mean y of pixel centres, x + 0.5, y + 0.5) of the
     core; column = min(2, floor(3 x / W)), row = min(2, floor(3 y / H)); the
     name is that grid cell's (row 0 = top, column 0 = left; "center" is (1, 1)).
  5. shape: the six shapes' outlines (`shape_templates`: vertices for a circumscribed
     circle of radius 1 at the origin, null for the circle itself) are each placed at the
     centroid of all object pixels (every shape is symmetric about its centre) and scaled
     so that its area equals the object's pixel count; a pixel (centre x + 0.5, y + 0.5)
     is inside a template by the even-odd rule (inside a circle: distance < radius). The
     shape is the template of the highest IoU with the object pixels, provided that IoU
     is at least `min_shape_iou` (0.6), else none ("shape_iou" reports it either way).
     size: the nearest of `sizes_px` (by ratio) to that template's diameter.
  Medians of an even count are the mean of the two middle values (numpy's median).
  A prompt passes when the background and the object colour are right and, where the
  prompt names a position, the position is right too. The shape is judged and scored
  apart from that (the size is reported, not scored).
The score is the fraction of prompts that pass; the shape score the fraction whose shape
is right.

Usage:
  python models/eval_demo.py [models/ras-demo] [--steps 20] [--guidance 5.0] [--seed 0]
                             [--limit N] [--out-dir out/demo-eval] [--device cpu|cuda]
  python models/eval_demo.py models/ras-demo --x0-grid x0.png   # what the model predicts per noise level
  python models/eval_demo.py --check-image some.png [--palette models/ras-demo/demo_palette.json]
Writes <out-dir>/<index>.png and <out-dir>/eval.json (per prompt: expected, found, pass).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 5.0


def nearest(rgb: np.ndarray, palette: dict) -> str:
    names = list(palette)
    cols = np.array([palette[n] for n in names], dtype=np.float64)
    return names[int(np.argmin(((cols - rgb[None, :]) ** 2).sum(1)))]


def inside_template(template, cx: float, cy: float, radius: float, h: int, w: int) -> np.ndarray:
    """Pixels [h, w] whose centres lie inside the template placed at (cx, cy), scaled by radius
    (computed in template units, the same operations as the Rust port's)."""
    u = ((np.arange(w, dtype=np.float64) + 0.5 - cx) / radius)[None, :]
    v = ((np.arange(h, dtype=np.float64) + 0.5 - cy) / radius)[:, None]
    if template is None:
        return u * u + v * v < 1.0
    inside = np.zeros((h, w), dtype=bool)
    for (x0, y0), (x1, y1) in zip(template, template[1:] + template[:1]):
        crosses = (y0 > v) != (y1 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x0 + (v - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (u < x_at)
    return inside


def template_area(template) -> float:
    """Area of a template at radius 1 (shoelace; pi for the circle)."""
    if template is None:
        return math.pi
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(template, template[1:] + template[:1]))) / 2


def check_shape(mask: np.ndarray, cfg: dict) -> dict:
    """The shape (and size) of the object pixels `mask` [H, W] (rule 5 above)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    cx, cy, area = float(xs.mean() + 0.5), float(ys.mean() + 0.5), int(mask.sum())
    scores = {}
    for name, template in cfg["shape_templates"].items():
        radius = math.sqrt(area / template_area(template))
        t = inside_template(template, cx, cy, radius, h, w)
        scores[name] = (float((t & mask).sum() / (t | mask).sum()), radius)
    best = max(scores, key=lambda k: scores[k][0])
    iou, radius = scores[best]
    sizes = {k: v for k, v in cfg["sizes_px"].items() if k in ("small", "large")}
    size = min(sizes, key=lambda k: abs(math.log(2 * radius / sizes[k])))
    ok = iou >= cfg["checker"]["min_shape_iou"]
    return {"shape": best if ok else None, "shape_iou": round(iou, 4), "size": size if ok else None,
            "shape_ious": {k: round(v[0], 3) for k, v in scores.items()}}


def check_image(rgb, cfg: dict) -> dict:
    """Background colour, object colour and grid position of an 8-bit RGB image [H, W, 3]."""
    img = np.asarray(rgb, dtype=np.float64)[..., :3]
    h, w = img.shape[:2]
    chk, palette = cfg["checker"], cfg["palette"]
    b = chk["border_px"]
    border = np.ones((h, w), dtype=bool)
    border[b:h - b, b:w - b] = False
    bg_rgb = np.median(img[border], axis=0)
    dist = np.sqrt(((img - bg_rgb[None, None, :]) ** 2).sum(-1))
    mask = dist > chk["object_threshold"]
    result = {"background": nearest(bg_rgb, palette), "background_rgb": [round(float(v), 1) for v in bg_rgb],
              "object": None, "object_rgb": None, "position": None, "centroid": None,
              "object_px": int(mask.sum()), "core_px": None, "shape": None, "shape_iou": None, "size": None}
    if mask.sum() < chk["min_object_px"]:
        return result
    core = mask & (dist >= np.median(dist[mask]))
    obj_rgb = np.median(img[core], axis=0)
    ys, xs = np.nonzero(core)
    cx, cy = float(xs.mean() + 0.5), float(ys.mean() + 0.5)
    col, row = min(2, int(3 * cx / w)), min(2, int(3 * cy / h))
    name = next(p["name"] for p in cfg["grid"]["positions"] if p["row"] == row and p["col"] == col)
    result.update(object=nearest(obj_rgb, palette), object_rgb=[round(float(v), 1) for v in obj_rgb],
                  position=name, centroid=[round(cx, 2), round(cy, 2)], core_px=int(core.sum()))
    result.update(check_shape(mask, cfg))
    return result


def judge(expected: dict, found: dict) -> dict:
    ok = {"background": found["background"] == expected["background"],
          "object": found["object"] == expected["colour"]}
    if expected.get("position"):
        ok["position"] = found["position"] == expected["position"]
    return {"ok": ok, "pass": all(ok.values()), "shape_ok": found["shape"] == expected["shape"]}


# Noise levels of the --x0-grid rows. The sampler (shift 3) spends the first third of its
# steps above 0.9, where the object's outline can only come from the caption.
X0_SIGMAS = (0.3, 0.6, 0.8, 0.9, 0.95, 1.0)


def x0_grid(pipe, out: Path, seed: int) -> None:
    """A training diagnostic: the model's clean-image prediction x0 = x_t - sigma v for a large
    red shape of each kind at the centre of a white picture, noised to each of X0_SIGMAS (rows,
    one noise draw) under its own caption (columns: the six shapes). Where the rows near
    sigma 1 show blobs but the lower rows show the shapes, the model denoises what it sees
    but has not learned the shape from the caption."""
    import torch
    from PIL import Image

    import train_demo  # the renderer of the training pictures (it imports this module: import here)

    rng = np.random.default_rng(seed)
    shapes = train_demo.SHAPES
    images = [train_demo.render({"shape": s, "colour": "red", "bg": "white", "pos": "center", "size": "large"}, rng)
              for s in shapes]
    vae, device = pipe.vae, pipe.transformer.device
    with torch.no_grad():
        z = vae.encode(train_demo.to_tensor(images).to(device)).latent_dist.mean
        x0 = (z - vae.config.shift_factor) * vae.config.scaling_factor
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=[f"a large red {s} on a white background" for s in shapes], prompt_2=None, prompt_3=None,
            device=device, do_classifier_free_guidance=False, max_sequence_length=256)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(device)
        size = images[0].shape[0]
        grid = Image.new("RGB", (size * len(shapes), size * len(X0_SIGMAS)))
        for r, sigma in enumerate(X0_SIGMAS):
            xt = (1 - sigma) * x0 + sigma * noise
            v = pipe.transformer(hidden_states=xt, encoder_hidden_states=embeds, pooled_projections=pooled,
                                 timestep=torch.full((len(shapes),), sigma * 1000.0, device=device),
                                 return_dict=False)[0]
            rgb = vae.decode((xt - sigma * v) / vae.config.scaling_factor + vae.config.shift_factor).sample
            rgb = ((rgb / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            for c, im in enumerate(rgb):
                grid.paste(Image.fromarray(im), (size * c, size * r))
    grid.save(out)
    print(f"wrote {out}: rows sigma {', '.join(map(str, X0_SIGMAS))}; columns {', '.join(shapes)}")


def main() -> None:
    ap = argparse.ArgumentParser(description="ras-demo prompt adherence",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("folder", nargs="?", type=Path, default=HERE / "ras-demo")
    ap.add_argument("--prompts", type=Path, default=None,
                    help="demo_prompts.json (default: the folder's, else models/demo_prompts.json)")
    ap.add_argument("--palette", type=Path, default=None, help="default: <folder>/demo_palette.json")
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    ap.add_argument("--seed", type=int, default=0, help="prompt i uses seed + i")
    ap.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    ap.add_argument("--out-dir", type=Path, default=Path("out/demo-eval"))
    ap.add_argument("--json", type=Path, default=None, help="default: <out-dir>/eval.json")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None)
    ap.add_argument("--x0-grid", type=Path, default=None, metavar="PNG",
                    help="only write the x0-prediction grid (a training diagnostic; see x0_grid) to this file")
    ap.add_argument("--check-image", type=Path, nargs="+", default=None,
                    help="only run the checker on these images and print what it finds")
    args = ap.parse_args()

    palette_path = args.palette or args.folder / "demo_palette.json"
    cfg = json.loads(palette_path.read_text())
    if args.check_image:
        from PIL import Image

        for path in args.check_image:
            found = check_image(np.asarray(Image.open(path).convert("RGB")), cfg)
            print(json.dumps({"image": str(path), **found}))
        return

    import torch
    from diffusers import StableDiffusion3Pipeline

    prompts_path = args.prompts or (args.folder / "demo_prompts.json")
    if not prompts_path.exists():
        prompts_path = HERE / "demo_prompts.json"
    prompts = json.loads(prompts_path.read_text())[: args.limit]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = StableDiffusion3Pipeline.from_pretrained(args.folder, text_encoder_3=None, tokenizer_3=None,
                                                    torch_dtype=torch.float32).to(device)
    pipe.set_progress_bar_config(disable=True)
    if args.x0_grid:
        x0_grid(pipe, args.x0_grid, args.seed)
        return
    size = cfg["image_size"]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows, passed, shapes_ok, t0 = [], 0, 0, time.time()
    for i, p in enumerate(prompts):
        gen = torch.Generator(device="cpu").manual_seed(args.seed + i)
        image = pipe(p["prompt"], height=size, width=size, num_inference_steps=args.steps,
                     guidance_scale=args.guidance, generator=gen, max_sequence_length=256).images[0]
        image.save(args.out_dir / f"{i:02d}.png")
        found = check_image(np.asarray(image.convert("RGB")), cfg)
        verdict = judge(p, found)
        passed += verdict["pass"]
        shapes_ok += verdict["shape_ok"]
        wrong = [k for k, v in verdict["ok"].items() if not v] + ([] if verdict["shape_ok"] else ["shape"])
        print(f"{i:2d} {'PASS' if verdict['pass'] else 'FAIL'} {p['prompt']!r}: background {found['background']}, "
              f"object {found['object']} {found['shape']} (IoU {found['shape_iou']}) at {found['position']} "
              f"({found['object_px']} px)" + (f"  wrong: {', '.join(wrong)}" if wrong else ""), flush=True)
        rows.append({"index": i, "seed": args.seed + i, "prompt": p["prompt"],
                     "expected": {k: p[k] for k in ("background", "colour", "position", "shape", "size")},
                     "found": found, **verdict})
    score, shape_score = passed / max(1, len(prompts)), shapes_ok / max(1, len(prompts))
    print(f"score {passed}/{len(prompts)} = {score:.1%}, shape {shapes_ok}/{len(prompts)} = {shape_score:.1%} "
          f"({args.steps} steps, guidance {args.guidance}, seed {args.seed}, {time.time() - t0:.1f}s on {device})")
    report = {"folder": str(args.folder), "prompts_file": str(prompts_path), "steps": args.steps,
              "guidance": args.guidance, "seed": args.seed, "device": device, "score": score,
              "passed": passed, "shape_score": shape_score, "shapes_right": shapes_ok, "total": len(prompts),
              "results": rows}
    json_path = args.json or args.out_dir / "eval.json"
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {json_path} and {len(prompts)} images in {args.out_dir}")


if __name__ == "__main__":
    main()

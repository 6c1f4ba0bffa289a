#!/usr/bin/env python3
"""PyTorch / diffusers reference timings at the shapes `ras bench` measures.

Pinned versions (what this was written and smoke-tested against; any torch 2.x runs it):
    torch 2.x (tested: 2.15.0 here, the lent H200's image has 2.11)
    diffusers==0.42.1   (the H200 image has none: bench/prepare-gpu-check.sh downloads it)

Measures, on CUDA when available (else CPU):
  * linear      x[M,K] @ w[N,K]^T with torch.nn.functional.linear at ras's kernel shapes
                (1024x1024x1024, 4096x1536x1536, 4096x6144x1536), in --dtype (bf16) and f32
                (TF32 off: ras's `linear ... f32` computes in full f32)
  * attention   scaled_dot_product_attention, 4096 queries x 4429 keys, 24 heads x 64,
                batch 1, in --dtype and f32; FLOPs = 4*Lq*Lk*heads*dim (as ras counts them)
  * sd3_forward diffusers' SD3Transformer2DModel at SD3-medium's config with random
                weights, default (SDPA) attention processor, eager (no torch.compile: the
                original RAS runs eager diffusers), 1024x1024 (latent 128x128, 333 text
                tokens of width 4096, pooled 2048), batch 1 and batch 2 (= one CFG step)

Times are the best of --reps after warm-up, from CUDA events (wall clock on CPU), in ms.
Human-readable lines go to stderr; the JSON result goes to stdout and to --json PATH.
bench/compare_torch.py sets these against `ras bench` output.

    python3 bench/torch_sd3.py --json torch.json     # on the GPU machine
    python3 bench/torch_sd3.py --tiny                # CPU smoke test: 2 layers, 256px, narrow
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

# SD3-medium's transformer config (stabilityai/stable-diffusion-3-medium-diffusers).
SD3_MEDIUM = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    num_layers=24,
    attention_head_dim=64,
    num_attention_heads=24,
    joint_attention_dim=4096,
    caption_projection_dim=1536,
    pooled_projection_dim=2048,
    out_channels=16,
    pos_embed_max_size=192,
)
# --tiny: the same architecture shrunk so a CPU finishes in seconds.
SD3_TINY = dict(
    SD3_MEDIUM,
    sample_size=32,
    num_layers=2,
    attention_head_dim=16,
    num_attention_heads=4,
    joint_attention_dim=64,
    caption_projection_dim=64,
    pooled_projection_dim=32,
)

# The shapes of `ras bench kernels` (src/cli/bench.rs) with --tokens 4096, and tiny ones.
FULL = dict(
    linear=[(1024, 1024, 1024), (4096, 1536, 1536), (4096, 6144, 1536)],
    attention=[(4096, 4096 + 333, 24, 64)],
    size=1024,
    text_tokens=333,
    sd3=SD3_MEDIUM,
)
TINY = dict(
    linear=[(128, 128, 128), (256, 64, 64), (256, 256, 64)],
    attention=[(256, 256 + 20, 4, 16)],
    size=256,
    text_tokens=20,
    sd3=SD3_TINY,
)

DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def best_ms(fn, device, warmup, reps):
    """Best of `reps` timed calls after `warmup` untimed ones. CUDA events time the GPU
    work itself; the best (not the mean) is what `ras bench` reports too."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(reps):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end))
        return best
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t0) * 1e3)
    return best


def sd3_flops(cfg, batch, n_img, n_txt):
    """Matmul FLOPs of one forward, the same formula as ras's Sd3Config::forward_flops
    (src/models/sd3/config.rs): 8.90e12 for SD3-medium at 1024², batch 1."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    layers, n, l = cfg["num_layers"], n_img, n_txt
    p = cfg["patch_size"] ** 2
    per_token = 2.0 * 12.0 * d * d
    blocks = layers * (n + l) * per_token + layers * 4.0 * (n + l) * (n + l) * d
    last = l * 2.0 * 10.0 * d * d + 4.0 * l * (n + l) * d
    embed = (
        2.0 * n * d * p * cfg["in_channels"]
        + 2.0 * l * d * cfg["joint_attention_dim"]
        + 2.0 * n * d * p * cfg["out_channels"]
    )
    return batch * (blocks - last + embed)


def bench_linear(shapes, dtype, device, warmup, reps):
    out = {}
    for m, n, k in shapes:
        x = torch.randn(m, k, device=device, dtype=dtype)
        w = torch.randn(n, k, device=device, dtype=dtype)
        ms = best_ms(lambda: F.linear(x, w), device, warmup, reps)
        key = f"{m}x{n}x{k}"
        out[key] = ms
        log(f"  linear {key:<20} {str(dtype)[6:]:<9} {ms:9.3f} ms {2 * m * n * k / ms / 1e9:9.1f} TFLOP/s")
    return out


def bench_attention(shapes, dtype, device, warmup, reps):
    out = {}
    for lq, lk, heads, dim in shapes:
        # SDPA's layout is [B, heads, L, dim].
        q = torch.randn(1, heads, lq, dim, device=device, dtype=dtype)
        k = torch.randn(1, heads, lk, dim, device=device, dtype=dtype)
        v = torch.randn(1, heads, lk, dim, device=device, dtype=dtype)
        ms = best_ms(lambda: F.scaled_dot_product_attention(q, k, v), device, warmup, reps)
        key = f"{lq}x{lk} {heads}x{dim}"
        flops = 4.0 * lq * lk * heads * dim
        out[key] = ms
        log(f"  attention {key:<17} {str(dtype)[6:]:<9} {ms:9.3f} ms {flops / ms / 1e9:9.1f} TFLOP/s")
    return out


def bench_sd3(shapes, dtype, device, warmup, reps, batches):
    from diffusers import SD3Transformer2DModel

    cfg = shapes["sd3"]
    t0 = time.perf_counter()
    # Build straight on the device (random init there is seconds; 2B parameters on the
    # CPU take much longer), then cast: random weights time the same as trained ones.
    # `.to(device=...)` as well, for any buffer made from CPU data inside the constructor.
    with torch.device(device):
        model = SD3Transformer2DModel(**cfg)
    model = model.to(device=device, dtype=dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    log(f"  SD3Transformer2DModel: {params / 1e6:.1f} M parameters, built in {time.perf_counter() - t0:.1f} s")

    latent = shapes["size"] // 8
    n_img = (latent // cfg["patch_size"]) ** 2
    n_txt = shapes["text_tokens"]
    times, tflops = {}, {}
    for batch in batches:
        x = torch.randn(batch, cfg["in_channels"], latent, latent, device=device, dtype=dtype)
        ctx = torch.randn(batch, n_txt, cfg["joint_attention_dim"], device=device, dtype=dtype)
        pooled = torch.randn(batch, cfg["pooled_projection_dim"], device=device, dtype=dtype)
        t = torch.full((batch,), 500.0, device=device, dtype=dtype)

        def forward():
            return model(
                hidden_states=x,
                encoder_hidden_states=ctx,
                pooled_projections=pooled,
                timestep=t,
                return_dict=False,
            )[0]

        with torch.inference_mode():
            ms = best_ms(forward, device, warmup, reps)
        flops = sd3_flops(cfg, batch, n_img, n_txt)
        times[f"batch{batch}"] = ms
        tflops[f"batch{batch}"] = flops / ms / 1e9
        log(
            f"  sd3 forward {cfg['num_layers']} layers {shapes['size']}px batch {batch} {str(dtype)[6:]}"
            f" {ms:9.2f} ms {flops / ms / 1e9:8.1f} TFLOP/s ({flops:.3g} FLOP)"
        )
    del model
    return times, tflops, sd3_flops(cfg, 1, n_img, n_txt)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="2 layers, 256px, narrow widths (CPU smoke test)")
    ap.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="main precision (default bf16)")
    ap.add_argument("--reps", type=int, default=10, help="timed repetitions per kernel")
    ap.add_argument("--sd3-reps", type=int, default=5, help="timed repetitions per SD3 forward")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-f32", action="store_true", help="skip the f32 kernel timings")
    ap.add_argument("--no-sd3", action="store_true", help="skip the diffusers transformer")
    ap.add_argument("--json", help="also write the JSON result here")
    args = ap.parse_args()

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = DTYPES[args.dtype]
    shapes = TINY if args.tiny else FULL
    # ras's f32 linear is plain f32 arithmetic: compare with the same, not TF32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "diffusers": None,
        "dtype": args.dtype,
        "tiny": args.tiny,
        "timing": "best of reps, ms, CUDA events" if device.type == "cuda" else "best of reps, ms, wall clock",
    }
    log(f"torch {torch.__version__} on {name} ({device.type}), {args.dtype}{', tiny shapes' if args.tiny else ''}")

    # The original RAS implementation (PyTorch, diffusers-based) could run here as a third
    # column; it is not wired yet, so only say whether its source came along.
    original = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ras-original")
    if os.path.isdir(original):
        log(f"note: {original} exists; running the original RAS is not wired yet, skipped")
        result["ras_original"] = "present, not wired yet"
    else:
        result["ras_original"] = None

    failed = False
    result["linear"] = bench_linear(shapes["linear"], dtype, device, args.warmup, args.reps)
    result["attention"] = bench_attention(shapes["attention"], dtype, device, args.warmup, args.reps)
    if not args.no_f32:
        result["linear_f32"] = bench_linear(shapes["linear"], torch.float32, device, args.warmup, args.reps)
        result["attention_f32"] = bench_attention(shapes["attention"], torch.float32, device, args.warmup, args.reps)
    if not args.no_sd3:
        try:
            import diffusers

            result["diffusers"] = diffusers.__version__
            times, tflops, per_image = bench_sd3(shapes, dtype, device, 2, args.sd3_reps, (1, 2))
            result["sd3_forward"] = times
            result["sd3_forward_tflops"] = tflops
            result["sd3_flops_per_image"] = per_image
            result["sd3_config"] = dict(shapes["sd3"], size=shapes["size"], text_tokens=shapes["text_tokens"])
        except Exception as e:  # report the kernels anyway; the exit status says it failed
            log(f"error: diffusers SD3 forward failed: {type(e).__name__}: {e}")
            result["sd3_forward"] = None
            result["sd3_error"] = f"{type(e).__name__}: {e}"
            failed = True

    text = json.dumps(result, indent=1)
    print(text, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

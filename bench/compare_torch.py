#!/usr/bin/env python3
"""Set `ras bench` output against bench/torch_sd3.py's JSON, as Markdown tables.

    python3 bench/compare_torch.py --torch torch.json \
        --kernels portable=kernels-portable.txt --kernels tiled=kernels-tiled.txt \
        --sd3 sd3.txt --ras ras.txt

Each ras file is the captured stdout of one `ras bench` run (other lines, such as
--profile's table, are ignored). Lines parsed, whitespace-tolerant; the name before the
time is the key:
    adapter: NVIDIA H200 (Vulkan)
    linear 4096x1536x1536 f32        3.0 ms   6524.0 GFLOP/s
    attention 4096x4429 24x64       30.8 ms   3617.0 GFLOP/s
    sd3 forward 24 layers 1024px batch 2 f16   1980.0 ms  8980.0 GFLOP/s
    sd3: 24 layers, 1024px (4096 image + 333 text tokens), 28 steps, cfg true
    ratio 0.5    ramp 0      41.70 s  speed-up  1.33x  ideal  1.65x  K/V cache ...

Both sides count the same FLOPs for the same work, so "ras % of torch throughput" is
torch time / ras time. Only stdlib: it runs under any python3.
"""

import argparse
import json
import re
import sys

FIGURE = re.compile(r"^\s*(?P<name>\S.*?)\s+(?P<ms>\d+(?:\.\d+)?)\s*ms\s+(?P<gflops>\d+(?:\.\d+)?)\s*GFLOP/s\s*$")
ADAPTER = re.compile(r"^\s*adapter:\s*(?P<name>.*?)\s*$")
LINEAR = re.compile(r"^linear\s+(?P<shape>\d+x\d+x\d+)\b")
ATTENTION = re.compile(r"^attention\s+(?P<shape>\d+x\d+\s+\d+x\d+)\b")
SD3 = re.compile(r"^sd3 forward\b.*\bbatch\s+(?P<batch>\d+)\b")
RAS_HEADER = re.compile(r"\b(?P<steps>\d+)\s+steps\b.*\bcfg\s+(?P<cfg>true|false)\b")
RAS_RATIO = re.compile(r"^\s*ratio\s+(?P<ratio>\d+(?:\.\d+)?)\s+ramp\s+\S+\s+(?P<s>\d+(?:\.\d+)?)\s*s\b")


def read_lines(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except OSError as e:
        print(f"warning: cannot read {path}: {e}", file=sys.stderr)
        return []


def parse_figures(lines):
    """{name: ms} of every `NAME  T ms  G GFLOP/s` line, and the adapter line."""
    figures, adapter = {}, None
    for line in lines:
        m = ADAPTER.match(line)
        if m:
            adapter = m["name"]
            continue
        m = FIGURE.match(line)
        if m:
            figures[" ".join(m["name"].split())] = float(m["ms"])
    return figures, adapter


def parse_ras(lines):
    """{ratio: seconds}, steps and cfg from `ras bench ras` output."""
    runs, steps, cfg = {}, None, None
    for line in lines:
        m = RAS_HEADER.search(line)
        if m and steps is None:
            steps, cfg = int(m["steps"]), m["cfg"] == "true"
        m = RAS_RATIO.match(line)
        if m:
            runs[float(m["ratio"])] = float(m["s"])
    return runs, steps, cfg


def norm_shape(shape):
    return " ".join(shape.split())


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def fmt_ratio(x):
    """Two decimals near 1, whole numbers once far off (a software adapter is 1000s× slower)."""
    if x is None:
        return "—"
    return f"{x:.2f}×" if x < 100 else f"{x:.0f}×"


def fmt_pct(x):
    if x is None:
        return "—"
    return f"{x:.0f}%" if x >= 100 else f"{x:.3g}%"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def compare_row(label, ras_ms, torch_ms, extra=()):
    ratio = ras_ms / torch_ms if ras_ms and torch_ms else None
    pct = 100.0 * torch_ms / ras_ms if ras_ms and torch_ms else None
    return [*label, fmt(ras_ms, ".2f"), fmt(torch_ms, ".3f"), fmt_ratio(ratio), fmt_pct(pct), *extra]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torch", required=True, help="JSON written by bench/torch_sd3.py")
    ap.add_argument("--kernels", action="append", default=[], metavar="VARIANT=FILE",
                    help="`ras bench kernels` output for one RAS_KERNELS variant (repeatable)")
    ap.add_argument("--sd3", help="`ras bench sd3` output")
    ap.add_argument("--ras", help="`ras bench ras` output")
    ap.add_argument("--steps", type=int, help="steps of the `bench ras` run (default: read from its output)")
    args = ap.parse_args()

    try:
        with open(args.torch) as f:
            torch = json.load(f)
    except (OSError, ValueError) as e:
        print(f"error: no PyTorch figures ({args.torch}: {e})", file=sys.stderr)
        return 1
    dtype = torch.get("dtype", "bf16")
    print(f"PyTorch: torch {torch.get('torch')}, diffusers {torch.get('diffusers')}, on {torch.get('device')}"
          f" ({dtype}; {torch.get('timing', 'ms')})")
    compared = 0

    # Kernels: every variant's rows against the same torch figures.
    t_lin, t_att = torch.get("linear") or {}, torch.get("attention") or {}
    t_lin32, t_att32 = torch.get("linear_f32") or {}, torch.get("attention_f32") or {}
    t_lin = {norm_shape(k): v for k, v in t_lin.items()}
    t_att = {norm_shape(k): v for k, v in t_att.items()}
    t_lin32 = {norm_shape(k): v for k, v in t_lin32.items()}
    t_att32 = {norm_shape(k): v for k, v in t_att32.items()}
    rows, adapters = [], {}
    for spec in args.kernels:
        variant, _, path = spec.partition("=")
        if not path:
            variant, path = "default", spec
        figures, adapter = parse_figures(read_lines(path))
        adapters[variant] = adapter
        if not figures:
            rows.append([variant, "(no figures)", "—", "—", "—", "—", "—", "—"])
            continue
        for name, ras_ms in figures.items():
            m_lin, m_att = LINEAR.match(name), ATTENTION.match(name)
            if m_lin:
                shape = norm_shape(m_lin["shape"])
                t, t32 = t_lin.get(shape), t_lin32.get(shape)
            elif m_att:
                shape = norm_shape(m_att["shape"])
                t, t32 = t_att.get(shape), t_att32.get(shape)
            else:
                continue
            r32 = ras_ms / t32 if t32 else None
            rows.append(compare_row([variant, name], ras_ms, t, [fmt(t32, ".3f"), fmt_ratio(r32)]))
            compared += t is not None
    if rows:
        names = ", ".join(f"{v}: {a}" for v, a in adapters.items() if a)
        print(f"\n### Kernels (ras adapter: {names or 'unknown'})\n")
        print(table(["variant", "kernel", "ras ms", f"torch {dtype} ms", "ras/torch time",
                     "ras % of torch throughput", "torch f32 ms", "ras/torch f32 time"], rows))

    # One transformer forward (batch 2 = one CFG step).
    t_sd3 = torch.get("sd3_forward") or {}
    step_rows = []
    if args.sd3:
        figures, _ = parse_figures(read_lines(args.sd3))
        for name, ras_ms in figures.items():
            m = SD3.match(name)
            if m:
                t = t_sd3.get(f"batch{m['batch']}")
                step_rows.append(compare_row([name, f"diffusers forward batch {m['batch']}"], ras_ms, t))
                compared += t is not None

    # Sampling loops: per-step time of ras's dense and RAS loops against one dense
    # diffusers step (one forward at the loop's batch; the scheduler's work is negligible).
    if args.ras:
        runs, steps, cfg = parse_ras(read_lines(args.ras))
        steps = args.steps or steps
        batch = 2 if cfg in (True, None) else 1
        t = t_sd3.get(f"batch{batch}")
        if runs and not steps:
            print("warning: bench ras output has no step count; pass --steps", file=sys.stderr)
        for ratio in sorted(runs, reverse=True):
            step_ms = runs[ratio] * 1e3 / steps if steps else None
            label = "dense" if ratio == 1.0 else f"RAS {ratio:g}"
            step_rows.append(compare_row([f"ras {label} per step ({steps} steps, batch {batch})",
                                          f"diffusers dense step (forward batch {batch})"], step_ms, t))
            compared += t is not None and step_ms is not None
    if step_rows:
        print(f"\n### SD3-medium transformer at 1024² (ras: synthetic f16 weights; diffusers: random {dtype})\n")
        print(table(["ras", "PyTorch", "ras ms", "torch ms", "ras/torch time", "ras % of torch throughput"],
                    step_rows))
        print("\n(per-step rows: the last column is torch time / ras time; a RAS step does less"
              " work than the dense diffusers step it is set against, which is the point)")

    if not compared:
        print("error: nothing could be compared (missing or unparsable ras output?)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

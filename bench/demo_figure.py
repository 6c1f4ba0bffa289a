"""The README's demo figure: for a few prompts of a `ras compare` run, one row of
dense | RAS | |dense - RAS| | compute map, with a caption line per row.

  cargo run --release -- compare --adherence models/demo_prompts.json --out-dir cmp
  python bench/demo_figure.py cmp 0 7 12 19 --out docs/demo-compare.png

Needs Pillow only. Reads <dir>/<NNN>/{dense,ras,diff,compute}.png and the prompts from
the PNGs' `parameters` text chunk.
"""

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

PANELS = ("dense.png", "ras.png", "diff.png", "compute.png")
HEADERS = ("dense", "RAS (defaults)", "|dense - RAS|", "steps each token was computed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="the --out-dir of `ras compare` over several prompts")
    ap.add_argument("index", type=int, nargs="+", help="prompt numbers (the NNN folders)")
    ap.add_argument("--out", type=Path, default=Path("docs/demo-compare.png"))
    args = ap.parse_args()

    size, pad, line = 256, 4, 16
    rows = []
    for i in args.index:
        d = args.dir / f"{i:03d}"
        images = [Image.open(d / p).convert("RGB") for p in PANELS]
        prompt = Image.open(d / "ras.png").text.get("parameters", "").split("\n")[0]
        rows.append((prompt, images))
    w = len(PANELS) * (size + pad) - pad
    h = line + len(rows) * (line + size + pad)
    out = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for k, head in enumerate(HEADERS):
        draw.text((k * (size + pad) + 2, 2), head, fill=(0, 0, 0))
    y = line
    for prompt, images in rows:
        draw.text((2, y + 2), prompt, fill=(0, 0, 0))
        for k, img in enumerate(images):
            out.paste(img.resize((size, size)), (k * (size + pad), y + line))
        y += line + size + pad
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.save(args.out, optimize=True)
    print(f"wrote {args.out} ({out.width}x{out.height})")


if __name__ == "__main__":
    main()

//! Prompt adherence of the demo model: reads an image and decides its
//! background colour, object colour and grid position, by the rule of
//! `models/eval_demo.py` (`check_image`), with the numbers from the model's
//! `demo_palette.json`:
//!  1. background: per-channel median of the pixels within `border_px` of
//!     the edge, named by the nearest palette colour (RGB distance);
//!  2. object: pixels farther than `object_threshold` from that median;
//!     fewer than `min_object_px` means no object;
//!  3. core: the object pixels at least the median of their distances from
//!     the background (a blurry edge or faint artefacts would otherwise
//!     decide the colour of a small object and pull its centroid);
//!  4. object colour: nearest palette colour to the core's per-channel median;
//!  5. position: the core's centroid's cell of the 3 × 3 grid.
//!
//! A prompt passes when background and object colour (and the position,
//! where the prompt names one) are right; shape and size are not judged.

use std::path::Path;

use serde::Deserialize;

use crate::config::read_json;
use crate::error::Result;
use crate::pipeline::Image;

#[derive(Debug, Clone, Deserialize)]
pub struct Checker {
    pub border_px: usize,
    pub object_threshold: f64,
    pub min_object_px: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Cell {
    pub name: String,
    pub row: usize,
    pub col: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Grid {
    pub positions: Vec<Cell>,
}

/// `demo_palette.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Palette {
    pub palette: std::collections::BTreeMap<String, [f64; 3]>,
    pub checker: Checker,
    pub grid: Grid,
}

/// One entry of `demo_prompts.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Expected {
    pub prompt: String,
    pub colour: String,
    pub background: String,
    pub position: Option<String>,
}

/// What the checker saw in an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub background: String,
    pub object: Option<String>,
    pub position: Option<String>,
    pub object_px: usize,
}

impl Found {
    pub fn passes(&self, e: &Expected) -> bool {
        self.background == e.background
            && self.object.as_deref() == Some(e.colour.as_str())
            && e.position
                .as_ref()
                .is_none_or(|p| self.position.as_ref() == Some(p))
    }
}

impl Palette {
    pub fn from_file(path: &Path) -> Result<Palette> {
        read_json(path)
    }

    fn nearest(&self, rgb: [f64; 3]) -> String {
        self.palette
            .iter()
            .map(|(name, c)| (name, (0..3).map(|i| (c[i] - rgb[i]).powi(2)).sum::<f64>()))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(name, _)| name.clone())
            .unwrap_or_default()
    }

    pub fn check(&self, image: &Image) -> Found {
        let (w, h, b) = (image.width, image.height, self.checker.border_px);
        let px = |i: usize| -> [f64; 3] { std::array::from_fn(|c| image.rgb[i * 3 + c] as f64) };
        let border: Vec<[f64; 3]> = (0..w * h)
            .filter(|i| {
                let (x, y) = (i % w, i / w);
                x < b || y < b || x + b >= w || y + b >= h
            })
            .map(px)
            .collect();
        let bg = median(&border);
        let dist = |i: usize| {
            let p = px(i);
            (0..3).map(|c| (p[c] - bg[c]).powi(2)).sum::<f64>().sqrt()
        };
        let object: Vec<(usize, f64)> = (0..w * h)
            .map(|i| (i, dist(i)))
            .filter(|&(_, d)| d > self.checker.object_threshold)
            .collect();
        let mut found = Found {
            background: self.nearest(bg),
            object: None,
            position: None,
            object_px: object.len(),
        };
        if object.len() < self.checker.min_object_px {
            return found;
        }
        let cut = median(&object.iter().map(|&(_, d)| [d; 3]).collect::<Vec<_>>())[0];
        let core: Vec<usize> = object
            .iter()
            .filter(|&&(_, d)| d >= cut)
            .map(|&(i, _)| i)
            .collect();
        let colour = median(&core.iter().map(|&i| px(i)).collect::<Vec<_>>());
        let n = core.len() as f64;
        let cx = core.iter().map(|&i| (i % w) as f64 + 0.5).sum::<f64>() / n;
        let cy = core.iter().map(|&i| (i / w) as f64 + 0.5).sum::<f64>() / n;
        let (col, row) = (
            ((3.0 * cx / w as f64) as usize).min(2),
            ((3.0 * cy / h as f64) as usize).min(2),
        );
        found.object = Some(self.nearest(colour));
        found.position = self
            .grid
            .positions
            .iter()
            .find(|c| c.row == row && c.col == col)
            .map(|c| c.name.clone());
        found
    }
}

pub fn read_expected(path: &Path) -> Result<Vec<Expected>> {
    read_json(path)
}

/// Per-channel median (numpy's: the mean of the middle two for even counts).
fn median(pixels: &[[f64; 3]]) -> [f64; 3] {
    std::array::from_fn(|c| {
        let mut v: Vec<f64> = pixels.iter().map(|p| p[c]).collect();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn palette() -> Palette {
        serde_json::from_str(
            r#"{"palette": {"red": [220, 30, 30], "blue": [30, 60, 220], "white": [245, 245, 245]},
                "checker": {"border_px": 4, "object_threshold": 48, "min_object_px": 100},
                "grid": {"positions": [
                  {"name": "top left", "row": 0, "col": 0}, {"name": "top", "row": 0, "col": 1},
                  {"name": "top right", "row": 0, "col": 2}, {"name": "left", "row": 1, "col": 0},
                  {"name": "center", "row": 1, "col": 1}, {"name": "right", "row": 1, "col": 2},
                  {"name": "bottom left", "row": 2, "col": 0}, {"name": "bottom", "row": 2, "col": 1},
                  {"name": "bottom right", "row": 2, "col": 2}]}}"#,
        )
        .unwrap()
    }

    /// A 60×48 blue image with a red 16×16 square at (x0, y0).
    fn drawn(x0: usize, y0: usize) -> Image {
        let (w, h) = (60, 48);
        let mut rgb = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let inside = (x0..x0 + 16).contains(&x) && (y0..y0 + 16).contains(&y);
                rgb.extend_from_slice(if inside {
                    &[210u8, 40, 35]
                } else {
                    &[35u8, 55, 210]
                });
            }
        }
        Image {
            width: w,
            height: h,
            rgb,
        }
    }

    #[test]
    fn finds_colours_and_cells() {
        let p = palette();
        let f = p.check(&drawn(2, 30));
        assert_eq!(f.background, "blue");
        assert_eq!(f.object.as_deref(), Some("red"));
        assert_eq!(f.position.as_deref(), Some("bottom left"));
        assert_eq!(f.object_px, 256);
        let e = Expected {
            prompt: String::new(),
            colour: "red".into(),
            background: "blue".into(),
            position: Some("bottom left".into()),
        };
        assert!(f.passes(&e));
        assert!(!p.check(&drawn(40, 2)).passes(&e), "top right is not bottom left");
        assert!(p.check(&drawn(40, 2)).passes(&Expected { position: None, ..e }));
    }

    /// A wide halo of a blend colour around a small object decides neither
    /// its colour nor its cell: only the farther half of the object pixels does.
    #[test]
    fn the_core_decides_colour_and_cell() {
        // A red square at the bottom left, and a purple-ish smear at the
        // top right (farther than the threshold from blue, nearer than
        // red) of almost as many pixels: with all object pixels the
        // centroid would land in the centre cell.
        let mut img = drawn(2, 30);
        for y in 0..20 {
            for x in 36..46 {
                img.rgb[(y * 60 + x) * 3..][..3].copy_from_slice(&[110, 50, 150]);
            }
        }
        let f = palette().check(&img);
        assert_eq!(f.object_px, 256 + 200);
        assert_eq!(f.object.as_deref(), Some("red"));
        assert_eq!(f.position.as_deref(), Some("bottom left"));
    }

    #[test]
    fn a_plain_image_has_no_object() {
        let mut img = drawn(0, 0);
        img.rgb
            .chunks_mut(3)
            .for_each(|p| p.copy_from_slice(&[245, 245, 245]));
        let f = palette().check(&img);
        assert_eq!((f.background.as_str(), f.object.clone()), ("white", None));
    }
}

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
//!  5. position: the core's centroid's cell of the 3 × 3 grid;
//!  6. shape: each of the palette's `shape_templates` (unit outlines, none
//!     for the circle), placed at the centroid of all object pixels and
//!     scaled to their area; the one of the highest IoU with the object
//!     pixels, if that is at least `min_shape_iou`. Size: the nearest of
//!     `sizes_px` (by ratio) to that template's diameter.
//!
//! A prompt passes when background and object colour (and the position,
//! where the prompt names one) are right; the shape is judged apart
//! ([`Found::shape_right`]) and the size only reported.

use std::collections::BTreeMap;
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
    pub min_shape_iou: f64,
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

/// Diameters of the two sizes, in pixels at 256 × 256.
#[derive(Debug, Clone, Deserialize)]
pub struct Sizes {
    pub small: f64,
    pub large: f64,
}

/// `demo_palette.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Palette {
    pub palette: BTreeMap<String, [f64; 3]>,
    pub checker: Checker,
    pub grid: Grid,
    /// In the order the checker tries them (the first of equal IoUs wins).
    pub shapes: Vec<String>,
    /// Outline vertices at circumradius 1 around the origin; `None` is a circle.
    pub shape_templates: BTreeMap<String, Option<Vec<[f64; 2]>>>,
    pub sizes_px: Sizes,
}

/// One entry of `demo_prompts.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Expected {
    pub prompt: String,
    pub colour: String,
    pub background: String,
    pub position: Option<String>,
    pub shape: String,
}

/// What the checker saw in an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub background: String,
    pub object: Option<String>,
    pub position: Option<String>,
    pub object_px: usize,
    pub shape: Option<String>,
    /// IoU of the best template, whether or not it reached `min_shape_iou`.
    pub shape_iou: f64,
    pub size: Option<String>,
}

impl Found {
    pub fn passes(&self, e: &Expected) -> bool {
        self.background == e.background
            && self.object.as_deref() == Some(e.colour.as_str())
            && e.position
                .as_ref()
                .is_none_or(|p| self.position.as_ref() == Some(p))
    }

    pub fn shape_right(&self, e: &Expected) -> bool {
        self.shape.as_deref() == Some(e.shape.as_str())
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
            shape: None,
            shape_iou: 0.0,
            size: None,
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
        let (cx, cy) = centroid(&core, w);
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
        let mask: Vec<usize> = object.iter().map(|&(i, _)| i).collect();
        (found.shape, found.shape_iou, found.size) = self.shape_of(&mask, w, h);
        found
    }

    /// Shape, its IoU and size of the object pixels `mask` (rule 6).
    fn shape_of(&self, mask: &[usize], w: usize, h: usize) -> (Option<String>, f64, Option<String>) {
        let n = mask.len() as f64;
        let (cx, cy) = centroid(mask, w);
        let mut best: Option<(&str, f64, f64)> = None;
        for name in &self.shapes {
            let Some(template) = self.shape_templates.get(name) else {
                continue;
            };
            let template = template.as_deref();
            let radius = (n / template_area(template)).sqrt();
            let inside = |i: usize| {
                let (x, y) = pixel_centre(i, w);
                inside_template(template, (x - cx) / radius, (y - cy) / radius)
            };
            let both = mask.iter().filter(|&&i| inside(i)).count() as f64;
            let template_px = (0..w * h).filter(|&i| inside(i)).count() as f64;
            let iou = both / (n + template_px - both);
            if best.is_none_or(|b| iou > b.1) {
                best = Some((name, iou, radius));
            }
        }
        let Some((name, iou, radius)) = best else {
            return (None, 0.0, None);
        };
        if iou < self.checker.min_shape_iou {
            return (None, iou, None);
        }
        let s = &self.sizes_px;
        let off = |d: f64| (2.0 * radius / d).ln().abs();
        let size = if off(s.small) <= off(s.large) {
            "small"
        } else {
            "large"
        };
        (Some(name.to_owned()), iou, Some(size.to_owned()))
    }
}

/// The centre of pixel `i` of a row-major image `w` pixels wide.
fn pixel_centre(i: usize, w: usize) -> (f64, f64) {
    ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5)
}

/// Mean pixel centre of `pixels` (indices into a row-major image).
fn centroid(pixels: &[usize], w: usize) -> (f64, f64) {
    let n = pixels.len() as f64;
    let (sx, sy) = pixels
        .iter()
        .map(|&i| pixel_centre(i, w))
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    (sx / n, sy / n)
}

/// Area of a template at circumradius 1 (shoelace; π for the circle).
fn template_area(template: Option<&[[f64; 2]]>) -> f64 {
    let Some(t) = template else {
        return std::f64::consts::PI;
    };
    let twice: f64 = (0..t.len())
        .map(|k| {
            let ([x0, y0], [x1, y1]) = (t[k], t[(k + 1) % t.len()]);
            x0 * y1 - x1 * y0
        })
        .sum();
    twice.abs() / 2.0
}

/// Whether (x, y), in template units, lies inside (even-odd rule).
fn inside_template(template: Option<&[[f64; 2]]>, x: f64, y: f64) -> bool {
    let Some(t) = template else {
        return x * x + y * y < 1.0;
    };
    let mut inside = false;
    for k in 0..t.len() {
        let ([x0, y0], [x1, y1]) = (t[k], t[(k + 1) % t.len()]);
        if (y0 > y) != (y1 > y) && x < x0 + (y - y0) * (x1 - x0) / (y1 - y0) {
            inside = !inside;
        }
    }
    inside
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
                "checker": {"border_px": 4, "object_threshold": 48, "min_object_px": 100,
                            "min_shape_iou": 0.6},
                "shapes": ["circle", "square", "triangle"],
                "shape_templates": {"circle": null,
                  "square": [[0.7071, -0.7071], [0.7071, 0.7071], [-0.7071, 0.7071], [-0.7071, -0.7071]],
                  "triangle": [[0, -1], [0.866, 0.5], [-0.866, 0.5]]},
                "sizes_px": {"meaning": "diameter", "small": 48, "large": 96, "jitter": 0.08},
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
            shape: "square".into(),
        };
        assert!(f.shape_right(&e), "{f:?}");
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

    /// A white picture with `inside(x, y)` (pixel centres) painted red.
    fn painted(inside: impl Fn(f64, f64) -> bool) -> Image {
        let (w, h) = (120, 100);
        let rgb = (0..w * h)
            .flat_map(|i| {
                let (x, y) = ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
                if inside(x, y) {
                    [220u8, 40, 40]
                } else {
                    [245, 245, 245]
                }
            })
            .collect();
        Image {
            width: w,
            height: h,
            rgb,
        }
    }

    /// Shapes painted by their own geometry (not the templates) are told
    /// apart, with their sizes; a ring (no template) is no shape.
    #[test]
    fn tells_shapes_and_sizes_apart() {
        let p = palette();
        let disc = painted(|x, y| (x - 60.0).powi(2) + (y - 50.0).powi(2) < 45.0f64.powi(2));
        let square = painted(|x, y| (x - 40.0).abs() < 17.0 && (y - 40.0).abs() < 17.0);
        // Apex up at (70, 20), base at y = 62.
        let triangle = painted(|x, y| y < 62.0 && (x - 70.0).abs() < (y - 20.0) * 0.577);
        let ring = painted(|x, y| {
            let d = ((x - 60.0).powi(2) + (y - 50.0).powi(2)).sqrt();
            (30.0..45.0).contains(&d)
        });
        let seen = |i: &Image| {
            let f = p.check(i);
            (f.shape, f.size, f.shape_iou)
        };
        let (shape, size, iou) = seen(&disc);
        assert_eq!(
            (shape.as_deref(), size.as_deref()),
            (Some("circle"), Some("large"))
        );
        assert!(iou > 0.98, "{iou}");
        let (shape, size, _) = seen(&square);
        assert_eq!(
            (shape.as_deref(), size.as_deref()),
            (Some("square"), Some("small"))
        );
        assert_eq!(seen(&triangle).0.as_deref(), Some("triangle"));
        let (shape, _, iou) = seen(&ring);
        assert_eq!(shape, None, "a ring is none of the shapes (IoU {iou})");
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

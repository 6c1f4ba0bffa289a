//! The Rust port of the demo model's adherence checker against
//! models/eval_demo.py's `check_image` on the images of
//! tests/fixtures/checker (drawn pictures and VAE round trips of every
//! shape; made by tests/fixtures/make_checker.py).

use std::path::Path;

use ras::eval::Palette;
use ras::pipeline::Image;
use serde_json::Value;

#[test]
fn checker_matches_python_on_drawn_and_round_trip_images() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checker");
    let palette = Palette::from_file(&dir.join("demo_palette.json")).unwrap();
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert_eq!(expected.len(), 12);
    let mut shapes_seen = std::collections::BTreeSet::new();
    for e in &expected {
        let name = e["image"].as_str().unwrap();
        let rgb = image::open(dir.join(name)).unwrap().to_rgb8();
        let image = Image {
            width: rgb.width() as usize,
            height: rgb.height() as usize,
            rgb: rgb.into_raw(),
        };
        let got = palette.check(&image);
        let want = &e["found"];
        let text = |v: &Value| v.as_str().map(str::to_owned);
        assert_eq!(Some(got.background.clone()), text(&want["background"]), "{name}");
        assert_eq!(got.object, text(&want["object"]), "{name}");
        assert_eq!(got.position, text(&want["position"]), "{name}");
        assert_eq!(
            got.object_px as u64,
            want["object_px"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(got.shape, text(&want["shape"]), "{name}: {got:?}");
        assert_eq!(got.size, text(&want["size"]), "{name}");
        let iou = want["shape_iou"].as_f64().unwrap();
        assert!(
            (got.shape_iou - iou).abs() <= 1e-4,
            "{name}: IoU {} vs {iou}",
            got.shape_iou
        );
        shapes_seen.extend(got.shape);
    }
    assert_eq!(shapes_seen.len(), 6, "every shape is recognised at least once");
}

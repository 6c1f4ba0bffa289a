//! The active token sets `ras sample --save-active` writes (shared by the
//! SD3 and Lumina RAS tests).

use std::path::Path;

/// The `active_step_{i}` tensors of a file: (step, shape, i32 values).
pub fn active_sets(path: &Path) -> Vec<(usize, Vec<usize>, Vec<i32>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut sets: Vec<_> = file
        .tensors()
        .into_iter()
        .filter_map(|(name, t)| {
            let step = name.strip_prefix("active_step_")?.parse().ok()?;
            assert_eq!(t.dtype(), safetensors::Dtype::I32, "{name}");
            Some((step, t.shape().to_vec(), bytemuck::pod_collect_to_vec(t.data())))
        })
        .collect();
    sets.sort();
    sets
}

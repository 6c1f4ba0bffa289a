//! Reference for `shaders/rows.wgsl`.

pub fn gather(src: &[f32], d: usize, idx: &[u32]) -> Vec<f32> {
    idx.iter()
        .flat_map(|&r| src[r as usize * d..(r as usize + 1) * d].iter().copied())
        .collect()
}

pub fn scatter(src: &[f32], d: usize, idx: &[u32], dst: &mut [f32]) {
    for (i, &r) in idx.iter().enumerate() {
        dst[r as usize * d..(r as usize + 1) * d].copy_from_slice(&src[i * d..(i + 1) * d]);
    }
}

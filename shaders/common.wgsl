// ---- shaders/common.wgsl: appended to every kernel file ------------------

// The index of this launch's first workgroup: a launch larger than the
// submit budget is recorded as several over consecutive workgroup ranges
// (gpu::budget); x holds the range's start, 0 for an unsplit launch.
@group(1) @binding(0) var<uniform> first_workgroup: vec4<u32>;

// Flat workgroup index. Launches above 65535 workgroups are folded into a
// 2-D grid by the host (gpu::recorder); this undoes the fold.
fn flat_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return first_workgroup.x + wid.y * nwg.x + wid.x;
}

// 16-bit tensors are stored two halves to a u32 word (element i in the low
// half when i is even). DTYPE codes: 0 = f32, 1 = f16, 2 = bf16.
fn word_index(dtype: u32, i: u32) -> u32 {
    return select(i >> 1u, i, dtype == 0u);
}

fn decode(dtype: u32, word: u32, i: u32) -> f32 {
    if dtype == 0u {
        return bitcast<f32>(word);
    }
    let bits = (word >> ((i & 1u) * 16u)) & 0xffffu;
    if dtype == 1u {
        return unpack2x16float(bits).x;
    }
    return bitcast<f32>(bits << 16u);
}

// GELU, tanh approximation (elementwise and the linear kernels' epilogue).
fn gelu_tanh(x: f32) -> f32 {
    // Clamped so tanh never sees an argument that overflows exp.
    let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
    return 0.5 * x * (1.0 + tanh(u));
}

// Linear layer: out[m, n_offset + n] = sum_k x[m, k] * w[n, k] + bias[n_offset + n]
// with PyTorch's [out_features, in_features] weight layout.
//
// Register-tiled and barrier-free: each invocation computes a 4×4 block of
// outputs from 4-wide k slices of four x rows and four w rows, so every
// load feeds four multiply-adds and no workgroup memory or barrier is needed
// (barriers are what make shared-memory tiling slow on software Vulkan). A
// workgroup of 64 covers a 32×32 output tile; rows and columns past the edge
// load a clamped (valid) row and skip the store.
//
// x is bound as vec4 and w as vec2<u32> so that, when K % 4 == 0 (ALIGNED),
// each slice is one wide load: measured 2-4× faster on lavapipe than four
// scalar loads. Otherwise the same loop reads element by element.
//
// Weights bigger than a storage binding are split by rows on the host and
// launched once per chunk, each writing its columns at `n_offset`.
//
// Row indices (optional): logical row m reads x row in_idx[m] and writes out
// row out_idx[m]. This gathers active tokens and writes K/V rows straight
// into a cache or a concatenated buffer without separate copy passes.
//
// Bias, row indices, epilogues and bindings 1-8: shaders/linear_common.wgsl.
// Binding 0: x [*, K] in ACT_T (f32 or f16). Dispatch: tiles_m * tiles_n workgroups,
// tiles = ceil(dim / 32).

override ALIGNED: bool = false;

@group(0) @binding(0) var<storage, read> x: array<vec4<ACT_T>>;
// The weights as pairs of words for 8-byte loads (linear_common declares
// binding 1 as single words; this kernel never touches that view).
@group(0) @binding(1) var<storage, read> w_pairs: array<vec2<u32>>;

fn w_pair_at(i: u32) -> f32 {
    let word = word_index(W_DTYPE, i);
    return decode(W_DTYPE, w_pairs[word >> 1u][word & 1u], i);
}

fn x_at(i: u32) -> f32 {
    return f32(x[i >> 2u][i & 3u]);
}

fn x4(i: u32) -> vec4<f32> {
    if ALIGNED {
        return vec4<f32>(x[i >> 2u]);
    }
    return vec4(x_at(i), x_at(i + 1u), x_at(i + 2u), x_at(i + 3u));
}

fn w4(i: u32) -> vec4<f32> {
    if !ALIGNED {
        return vec4(w_pair_at(i), w_pair_at(i + 1u), w_pair_at(i + 2u), w_pair_at(i + 3u));
    }
    if W_DTYPE == 0u {
        return bitcast<vec4<f32>>(vec4(w_pairs[i >> 1u], w_pairs[(i >> 1u) + 1u]));
    }
    let q = w_pairs[i >> 2u];
    if W_DTYPE == 1u {
        return vec4(unpack2x16float(q.x), unpack2x16float(q.y));
    }
    return bitcast<vec4<f32>>(vec4(q.x << 16u, q.x & 0xffff0000u, q.y << 16u, q.y & 0xffff0000u));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tile = flat_workgroup(wid, nwg);
    let m0 = (tile / p.tiles_n) * 32u + (lid / 8u) * 4u;
    let n0 = (tile % p.tiles_n) * 32u + (lid % 8u) * 4u;
    if m0 >= p.m || n0 >= p.n {
        return;
    }
    let x0 = x_row(m0) * p.k;
    let x1 = x_row(m0 + 1u) * p.k;
    let x2 = x_row(m0 + 2u) * p.k;
    let x3 = x_row(m0 + 3u) * p.k;
    let w0 = min(n0, p.n - 1u) * p.k;
    let w1 = min(n0 + 1u, p.n - 1u) * p.k;
    let w2 = min(n0 + 2u, p.n - 1u) * p.k;
    let w3 = min(n0 + 3u, p.n - 1u) * p.k;
    // c_i[j] accumulates out[m0 + i, n0 + j]. Reducing each 4-wide product
    // with dot() right away keeps 16 live accumulators, not 64.
    var c0 = vec4(0.0);
    var c1 = vec4(0.0);
    var c2 = vec4(0.0);
    var c3 = vec4(0.0);
    let k4 = p.k & ~3u;
    for (var k = 0u; k < k4; k += 4u) {
        let a0 = x4(x0 + k);
        let a1 = x4(x1 + k);
        let a2 = x4(x2 + k);
        let a3 = x4(x3 + k);
        let b0 = w4(w0 + k);
        let b1 = w4(w1 + k);
        let b2 = w4(w2 + k);
        let b3 = w4(w3 + k);
        c0 += vec4(dot(a0, b0), dot(a0, b1), dot(a0, b2), dot(a0, b3));
        c1 += vec4(dot(a1, b0), dot(a1, b1), dot(a1, b2), dot(a1, b3));
        c2 += vec4(dot(a2, b0), dot(a2, b1), dot(a2, b2), dot(a2, b3));
        c3 += vec4(dot(a3, b0), dot(a3, b1), dot(a3, b2), dot(a3, b3));
    }
    for (var k = k4; k < p.k; k++) {
        let b = vec4(w_pair_at(w0 + k), w_pair_at(w1 + k), w_pair_at(w2 + k), w_pair_at(w3 + k));
        c0 = fma(vec4(x_at(x0 + k)), b, c0);
        c1 = fma(vec4(x_at(x1 + k)), b, c1);
        c2 = fma(vec4(x_at(x2 + k)), b, c2);
        c3 = fma(vec4(x_at(x3 + k)), b, c3);
    }
    let c = array(c0, c1, c2, c3);
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            if m0 + i < p.m && n0 + j < p.n {
                store(m0 + i, n0 + j, c[i][j]);
            }
        }
    }
}

// Linear layer, workgroup-memory tiled variant for hardware GPUs. Same
// contract as linear.wgsl (bindings, params, row indices, weight chunks,
// epilogues, results to f32 rounding).
//
// Why a second kernel: linear.wgsl keeps every operand in registers and
// never synchronises, which is what a CPU-backed adapter (lavapipe) runs
// fastest, but on a GPU each invocation then streams its own rows from
// memory. Here a workgroup of 256 stages a 64×16 slice of x and of w in
// workgroup memory per step of k (each element loaded from memory once per
// workgroup, not once per invocation), then each invocation accumulates a
// 4×4 block of the 64×64 output tile from it. The staging is stored
// k-major as vec4 columns so the inner loop reads two vec4s per 16 FMAs.
//
// Bias, row indices, epilogues and bindings 1-8: shaders/linear_common.wgsl.
// Binding 0: x [*, K] in ACT_T (f32 or f16, as vec4). Dispatch: tiles_m * tiles_n
// workgroups, tiles = ceil(dim / 64).

override ALIGNED: bool = false;

@group(0) @binding(0) var<storage, read> x: array<vec4<ACT_T>>;

const BM: u32 = 64u;
const BK: u32 = 16u;

// sa[k * 16 + r / 4][r % 4] = x[row r of the tile, k]; sb likewise for w.
var<workgroup> sa: array<vec4<f32>, 256>;
var<workgroup> sb: array<vec4<f32>, 256>;

fn x_at(i: u32) -> f32 {
    return f32(x[i >> 2u][i & 3u]);
}

// x[row base, k .. k + 4], zero past K.
fn x4(base: u32, k: u32) -> vec4<f32> {
    if ALIGNED && k + 4u <= p.k {
        return vec4<f32>(x[(base + k) >> 2u]);
    }
    var v = vec4(0.0);
    for (var j = 0u; j < 4u; j++) {
        if k + j < p.k {
            v[j] = x_at(base + k + j);
        }
    }
    return v;
}

// w[row base, k .. k + 4], zero past K.
fn w4(base: u32, k: u32) -> vec4<f32> {
    if ALIGNED && k + 4u <= p.k {
        let i = base + k;
        if W_DTYPE == 0u {
            return bitcast<vec4<f32>>(vec4(w[i], w[i + 1u], w[i + 2u], w[i + 3u]));
        }
        let a = w[i >> 1u];
        let b = w[(i >> 1u) + 1u];
        if W_DTYPE == 1u {
            return vec4(unpack2x16float(a), unpack2x16float(b));
        }
        return bitcast<vec4<f32>>(vec4(a << 16u, a & 0xffff0000u, b << 16u, b & 0xffff0000u));
    }
    var v = vec4(0.0);
    for (var j = 0u; j < 4u; j++) {
        if k + j < p.k {
            v[j] = w_at(base + k + j);
        }
    }
    return v;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tile = flat_workgroup(wid, nwg);
    let bm = (tile / p.tiles_n) * BM;
    let bn = (tile % p.tiles_n) * BM;
    // Staging: invocation lid loads k .. k + 4 of tile row r of x and of w.
    // Rows past the edge load a clamped (valid) row whose results are not stored.
    let r = lid / 4u;
    let q = (lid % 4u) * 4u;
    let xa = x_row(bm + r) * p.k;
    let wa = min(bn + r, p.n - 1u) * p.k;
    // Accumulation: invocation (ty, tx) owns rows bm + 4ty .. and columns bn + 4tx ..
    let ty = lid / 16u;
    let tx = lid % 16u;
    var c0 = vec4(0.0);
    var c1 = vec4(0.0);
    var c2 = vec4(0.0);
    var c3 = vec4(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        let a = x4(xa, k0 + q);
        let b = w4(wa, k0 + q);
        for (var j = 0u; j < 4u; j++) {
            sa[(q + j) * 16u + r / 4u][r % 4u] = a[j];
            sb[(q + j) * 16u + r / 4u][r % 4u] = b[j];
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let av = sa[kk * 16u + ty];
            let bv = sb[kk * 16u + tx];
            c0 = fma(vec4(av.x), bv, c0);
            c1 = fma(vec4(av.y), bv, c1);
            c2 = fma(vec4(av.z), bv, c2);
            c3 = fma(vec4(av.w), bv, c3);
        }
        workgroupBarrier();
    }
    let m0 = bm + ty * 4u;
    let n0 = bn + tx * 4u;
    let c = array(c0, c1, c2, c3);
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            if m0 + i < p.m && n0 + j < p.n {
                store(m0 + i, n0 + j, c[i][j]);
            }
        }
    }
}

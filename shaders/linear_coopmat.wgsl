enable f16;
enable wgpu_cooperative_matrix;

// Linear layer on tensor cores through cooperative matrices (wgpu's
// experimental feature; Vulkan VK_KHR_cooperative_matrix, Metal simdgroup
// matrices). Same contract as linear.wgsl except precision: x and w are
// rounded to f16 for the products, which accumulate in f32 (as PyTorch's
// reduced-precision matmuls do). Used only where the adapter advertises
// 16×16×16 f16→f32 matrices and this kernel passed its start-up self-test
// against linear.wgsl (kernels::variant).
//
// A workgroup computes a 64×64 output tile with four subgroups, each a
// 32×32 quadrant as 2×2 accumulators of 16×16. Per step of 32 in k, the
// workgroup stages x rows [64 × 32] and w rows [64 × 32] in workgroup
// memory as f16 (zero past K, clamped rows past M and N), then each
// subgroup multiplies its fragments. The result goes through workgroup
// memory so the edges, bias, output row indices and column offset are
// handled by plain stores.
//
// WG must be four times the subgroup size (the host sets it from the
// adapter's fixed subgroup size), so the workgroup is exactly four subgroups.
//
// Bias, row indices, epilogues and bindings 1-8: shaders/linear_common.wgsl.
// Binding 0: x [*, K] in ACT_T (f32 or f16). Dispatch: tiles_m * tiles_n workgroups,
// tiles = ceil(dim / 64).

override WG: u32 = 128u;

@group(0) @binding(0) var<storage, read> x: array<ACT_T>;

const BM: u32 = 64u;
const BK: u32 = 32u;

var<workgroup> sa: array<f16, 2048>; // [m][k], BM × BK
var<workgroup> sb: array<f16, 2048>; // [n][k], BM × BK
var<workgroup> sc: array<f32, 4096>; // [m][n], BM × BM

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg: u32) {
    let tile = flat_workgroup(wid, nwg);
    let bm = (tile / p.tiles_n) * BM;
    let bn = (tile % p.tiles_n) * BM;
    let qm = (sg / 2u) * 32u;
    let qn = (sg % 2u) * 32u;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var e = lid; e < BM * BK; e += WG) {
            let r = e / BK;
            let k = k0 + e % BK;
            let inside = k < p.k;
            let kc = min(k, p.k - 1u);
            sa[e] = f16(select(0.0, f32(x[x_row(bm + r) * p.k + kc]), inside));
            sb[e] = f16(select(0.0, w_at(min(bn + r, p.n - 1u) * p.k + kc), inside));
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk += 16u) {
            // A is row-major [m][k]; B[k][n] = w[n][k] is column-major.
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&sa[qm * BK + kk], BK);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&sa[(qm + 16u) * BK + kk], BK);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&sb[qn * BK + kk], BK);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&sb[(qn + 16u) * BK + kk], BK);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
        workgroupBarrier();
    }
    coopStoreT(c00, &sc[qm * BM + qn], BM);
    coopStoreT(c01, &sc[qm * BM + qn + 16u], BM);
    coopStoreT(c10, &sc[(qm + 16u) * BM + qn], BM);
    coopStoreT(c11, &sc[(qm + 16u) * BM + qn + 16u], BM);
    workgroupBarrier();
    for (var e = lid; e < BM * BM; e += WG) {
        let m = bm + e / BM;
        let n = bn + e % BM;
        if m < p.m && n < p.n {
            store(m, n, sc[e]);
        }
    }
}

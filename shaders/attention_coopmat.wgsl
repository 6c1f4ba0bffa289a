enable f16;
enable wgpu_cooperative_matrix;

// Attention on tensor cores through cooperative matrices (16×16×16, f16
// products, f32 sums). Same contract as attention.wgsl (bindings, params,
// layouts, grouped heads, key bias, storage types) for heads of at most
// 64 dims and calls without a causal mask or score bias; the launcher
// sends other calls to the tiled kernel. Used only where the adapter has
// the matrices and this kernel matched the portable one in the start-up
// self-test (kernels::variant): no CI adapter can run it.
//
// A workgroup is four subgroups (WG = 4 × the adapter's fixed subgroup
// size) and takes 64 queries of one (batch, head), 16 per subgroup. Q is
// staged once as f16 (scaled into log2 units), zero-padded to 64 dims.
// Cooperative matrices cannot be read element by element, so the softmax
// goes through workgroup memory, in two passes over the keys (tiles of
// 32): pass 1 computes S = Q·Kᵀ per tile and each row's running max and
// sum; pass 2 recomputes S, forms P = exp2(S − max) / sum in f16 and adds
// P·V into the subgroup's four 16×16 output fragments, which never need
// rescaling. That costs QKᵀ twice (1.5× the FLOPs of one pass) but keeps
// the output in matrix registers. The output leaves through workgroup
// memory, so tile edges and the output type are handled by plain stores.
//
// Dispatch: B · Hq · q_blocks workgroups, q_blocks = ceil(Lq / 64).

override WG: u32 = 128u;

const BQ: u32 = 64u;
const BK: u32 = 32u;
const DP: u32 = 64u;

// K and V element by element (the rest of the bindings: attention_common.wgsl).
@group(0) @binding(1) var<storage, read> ks: array<KV_T>;
@group(0) @binding(2) var<storage, read> vs: array<KV_T>;

var<workgroup> sq: array<f16, BQ * DP>; // [query][dim], scaled
var<workgroup> sk: array<f16, BK * DP>; // [key][dim]
var<workgroup> sv: array<f16, BK * DP>; // [key][dim]
var<workgroup> ss: array<f32, BQ * BK>; // scores [query][key]; later output staging
var<workgroup> sp: array<f16, BQ * BK>; // probabilities [query][key]
var<workgroup> kb: array<f32, BK>; // key bias in log2 units, NEG for no key
var<workgroup> row_max: array<f32, BQ>;
var<workgroup> row_sum: array<f32, BQ>;

// Stages keys j0 .. j0 + BK (and, with `values`, their values) as f16,
// zero past D and past Lk, with their key bias.
fn stage_keys(lid: u32, b: u32, k_base: u32, v_base: u32, j0: u32, values: bool) {
    for (var i = lid; i < BK * DP; i += WG) {
        let j = j0 + i / DP;
        let d = i % DP;
        let inside = j < p.lk && d < D;
        let jc = min(j, p.lk - 1u);
        let dc = min(d, D - 1u);
        sk[i] = f16(select(0.0, f32(ks[k_base + jc * p.k_stride + dc]), inside));
        if values {
            sv[i] = f16(select(0.0, f32(vs[v_base + jc * p.v_stride + dc]), inside));
        }
    }
    for (var i = lid; i < BK; i += WG) {
        kb[i] = key_bias_log2(b, j0 + i);
    }
}

// Scores of the subgroup's 16 queries against the tile's 32 keys into ss.
fn scores(sg: u32) {
    var c0 = coop_mat16x16<f32, C>();
    var c1 = coop_mat16x16<f32, C>();
    for (var dd = 0u; dd < DP; dd += 16u) {
        // A = Q rows (row-major [query][dim]); B[dim][key] = K[key][dim]
        // (column-major with stride DP).
        let a = coopLoadT<coop_mat16x16<f16, A>>(&sq[16u * sg * DP + dd], DP);
        let b0 = coopLoad<coop_mat16x16<f16, B>>(&sk[dd], DP);
        let b1 = coopLoad<coop_mat16x16<f16, B>>(&sk[16u * DP + dd], DP);
        c0 = coopMultiplyAdd(a, b0, c0);
        c1 = coopMultiplyAdd(a, b1, c1);
    }
    coopStoreT(c0, &ss[16u * sg * BK], BK);
    coopStoreT(c1, &ss[16u * sg * BK + 16u], BK);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg: u32,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sg_size: u32) {
    let blk = block_of(flat_workgroup(wid, nwg));
    let b = blk.b;
    let h = blk.h;
    let qb = blk.qb;
    let k_base = blk.k_base;
    let v_base = blk.v_base;
    let t0 = qb * BQ;

    // Q, scaled into log2 units; rows past Lq are zero (their results are
    // not stored).
    for (var i = lid; i < BQ * DP; i += WG) {
        let t = t0 + i / DP;
        let d = i % DP;
        let inside = t < p.lq && d < D;
        let tc = min(t, p.lq - 1u);
        let dc = min(d, D - 1u);
        let q = f32(qs[p.q_off + (b * p.lq + tc) * p.q_stride + h * D + dc]);
        sq[i] = f16(select(0.0, q * p.scale_log2, inside));
    }
    for (var i = lid; i < BQ; i += WG) {
        row_max[i] = NEG;
        row_sum[i] = 0.0;
    }

    // Pass 1: each row's max and sum of exp2 over all keys.
    for (var j0 = 0u; j0 < p.lk; j0 += BK) {
        workgroupBarrier();
        stage_keys(lid, b, k_base, v_base, j0, false);
        workgroupBarrier();
        scores(sg);
        workgroupBarrier();
        for (var r = lid; r < BQ; r += WG) {
            var m = row_max[r];
            var l = row_sum[r];
            for (var j = 0u; j < BK; j++) {
                if kb[j] > NEG {
                    let s = ss[r * BK + j] + kb[j];
                    let m_new = max(m, s);
                    l = l * exp2(m - m_new) + exp2(s - m_new);
                    m = m_new;
                }
            }
            row_max[r] = m;
            row_sum[r] = l;
        }
    }

    // Pass 2: O = Σ_tiles P·V with P normalised by the final max and sum.
    var o0 = coop_mat16x16<f32, C>();
    var o1 = coop_mat16x16<f32, C>();
    var o2 = coop_mat16x16<f32, C>();
    var o3 = coop_mat16x16<f32, C>();
    for (var j0 = 0u; j0 < p.lk; j0 += BK) {
        workgroupBarrier();
        stage_keys(lid, b, k_base, v_base, j0, true);
        workgroupBarrier();
        scores(sg);
        workgroupBarrier();
        for (var i = lid; i < BQ * BK; i += WG) {
            let r = i / BK;
            let j = i % BK;
            let l = row_sum[r];
            // A query whose keys are all masked has l = 0 and outputs 0.
            let pj = select(exp2(ss[i] + kb[j] - row_max[r]) / l, 0.0, kb[j] <= NEG || l <= 0.0);
            sp[i] = f16(pj);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk += 16u) {
            // A = P rows (row-major [query][key]); B = V (row-major [key][dim]).
            let a = coopLoadT<coop_mat16x16<f16, A>>(&sp[16u * sg * BK + kk], BK);
            o0 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&sv[kk * DP], DP), o0);
            o1 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&sv[kk * DP + 16u], DP), o1);
            o2 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&sv[kk * DP + 32u], DP), o2);
            o3 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&sv[kk * DP + 48u], DP), o3);
        }
    }

    // Out through workgroup memory, 16 dims at a time: each subgroup stages
    // its 16×16 fragment in its own quarter of ss and stores the rows that
    // exist.
    workgroupBarrier();
    let stage = 16u * sg * BK;
    for (var c = 0u; c < 4u; c++) {
        switch c {
            case 0u: { coopStoreT(o0, &ss[stage], 16u); }
            case 1u: { coopStoreT(o1, &ss[stage], 16u); }
            case 2u: { coopStoreT(o2, &ss[stage], 16u); }
            default: { coopStoreT(o3, &ss[stage], 16u); }
        }
        workgroupBarrier();
        for (var e = lane; e < 256u; e += sg_size) {
            let t = t0 + 16u * sg + e / 16u;
            let d = 16u * c + e % 16u;
            if t < p.lq && d < D {
                out[((b * p.lq + t) * p.hq + h) * D + d] = O_T(ss[stage + e]);
            }
        }
        workgroupBarrier();
    }
}

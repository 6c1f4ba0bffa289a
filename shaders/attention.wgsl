// Attention without the score matrix (flash-attention style online softmax):
//
//   out[b, i, h, :] = Σ_j softmax_j(scale · Q[b, i, h, :]·K[b, j, g, :] | mask[b, j]) · V[b, j, g, :]
//
// with g = h / group (grouped-query heads share a kv head). Masked keys
// (mask == 0) get no weight; a query whose keys are all masked outputs 0.
//
// Layout: token-major rows. Element d of head h of token t of batch b lives
// at  off + (b · len + t) · stride + h · D + d  in its buffer, so Q, K and V
// may be slices of one fused buffer; out is contiguous [B, Lq, Hq, D].
//
// Design (software rasterisers first, no barriers): each invocation owns QPT
// queries of one (batch, head), keeping their scaled query and output
// accumulator in private arrays. A workgroup shares (batch, head), so key and
// value loads have the same address in every lane and every key is loaded
// once per lane group, then reused for QPT queries. Keys are walked in
// blocks of BK with one running-max rescale per block, not per key. Scores
// are in log2 units (scale · log2 e folded into Q) so the softmax uses exp2.
//
// Bindings: 0 q, 1 k, 2 v, 3 mask (u32 [B, Lk]; any buffer when MASKED = 0),
// 4 out, 5 params. Dispatch: B · Hq · q_blocks workgroups, q_blocks =
// ceil(Lq / (WG · QPT)). Overrides: D head dim (≤ MAX_D), QPT queries per
// invocation (≤ MAX_QPT), WG workgroup size, MASKED 0/1.

override D: u32 = 64u;
override QPT: u32 = 1u;
override WG: u32 = 64u;
override MASKED: u32 = 0u;

const MAX_D: u32 = 128u;
const MAX_QPT: u32 = 4u;
const BK: u32 = 8u;
// Below any real score; finite so that differences of it never give NaN.
const NEG: f32 = -3.0e38;

struct Params {
    lq: u32,
    lk: u32,
    hq: u32,
    group: u32,
    q_off: u32,
    q_stride: u32,
    k_off: u32,
    k_stride: u32,
    v_off: u32,
    v_stride: u32,
    q_blocks: u32,
    scale_log2: f32,
}

@group(0) @binding(0) var<storage, read> qs: array<f32>;
@group(0) @binding(1) var<storage, read> ks: array<f32>;
@group(0) @binding(2) var<storage, read> vs: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let w = flat_workgroup(wid, nwg);
    let qb = w % p.q_blocks;
    let h = (w / p.q_blocks) % p.hq;
    let b = w / (p.q_blocks * p.hq);
    let kv_col = (h / p.group) * D;
    let k_base = p.k_off + b * p.lk * p.k_stride + kv_col;
    let v_base = p.v_off + b * p.lk * p.v_stride + kv_col;

    var q: array<array<f32, MAX_D>, MAX_QPT>;
    var acc: array<array<f32, MAX_D>, MAX_QPT>;
    var m: array<f32, MAX_QPT>;
    var l: array<f32, MAX_QPT>;
    for (var i = 0u; i < QPT; i++) {
        // Lanes past the end work on the last query and skip the store.
        let t = min(qb * WG * QPT + i * WG + lid, p.lq - 1u);
        let row = p.q_off + (b * p.lq + t) * p.q_stride + h * D;
        for (var d = 0u; d < D; d++) {
            q[i][d] = qs[row + d] * p.scale_log2;
            acc[i][d] = 0.0;
        }
        m[i] = NEG;
        l[i] = 0.0;
    }

    for (var j0 = 0u; j0 < p.lk; j0 += BK) {
        // Rows of the block's keys; the ragged tail repeats the last key and
        // is masked out below.
        var k_row: array<u32, BK>;
        var v_row: array<u32, BK>;
        var valid: array<bool, BK>;
        for (var jj = 0u; jj < BK; jj++) {
            let j = min(j0 + jj, p.lk - 1u);
            k_row[jj] = k_base + j * p.k_stride;
            v_row[jj] = v_base + j * p.v_stride;
            valid[jj] = j0 + jj < p.lk;
            if MASKED != 0u {
                valid[jj] = valid[jj] && mask[b * p.lk + j] != 0u;
            }
        }

        var s: array<array<f32, BK>, MAX_QPT>;
        for (var d = 0u; d < D; d++) {
            var kd: array<f32, BK>;
            for (var jj = 0u; jj < BK; jj++) {
                kd[jj] = ks[k_row[jj] + d];
            }
            for (var i = 0u; i < QPT; i++) {
                let qd = q[i][d];
                for (var jj = 0u; jj < BK; jj++) {
                    s[i][jj] = fma(qd, kd[jj], s[i][jj]);
                }
            }
        }

        var alpha: array<f32, MAX_QPT>;
        for (var i = 0u; i < QPT; i++) {
            var mb = m[i];
            for (var jj = 0u; jj < BK; jj++) {
                mb = max(mb, select(NEG, s[i][jj], valid[jj]));
            }
            alpha[i] = exp2(m[i] - mb);
            var sum = 0.0;
            for (var jj = 0u; jj < BK; jj++) {
                s[i][jj] = select(0.0, exp2(s[i][jj] - mb), valid[jj]);
                sum += s[i][jj];
            }
            l[i] = l[i] * alpha[i] + sum;
            m[i] = mb;
        }

        for (var d = 0u; d < D; d++) {
            var vd: array<f32, BK>;
            for (var jj = 0u; jj < BK; jj++) {
                vd[jj] = vs[v_row[jj] + d];
            }
            for (var i = 0u; i < QPT; i++) {
                var a = acc[i][d] * alpha[i];
                for (var jj = 0u; jj < BK; jj++) {
                    a = fma(s[i][jj], vd[jj], a);
                }
                acc[i][d] = a;
            }
        }
    }

    for (var i = 0u; i < QPT; i++) {
        let t = qb * WG * QPT + i * WG + lid;
        if t < p.lq {
            let inv = select(0.0, 1.0 / l[i], l[i] > 0.0);
            let row = ((b * p.lq + t) * p.hq + h) * D;
            for (var d = 0u; d < D; d++) {
                out[row + d] = acc[i][d] * inv;
            }
        }
    }
}

// Attention, workgroup-memory tiled variant for hardware GPUs. Same
// contract as attention.wgsl (bindings, params, layouts, grouped heads,
// key bias, storage types) for calls without a causal mask or score bias
// (those take the portable kernel).
//
// Why a second kernel: attention.wgsl gives each invocation 4 queries and
// MAX_D-wide private accumulators per query, which suits a CPU-backed
// adapter (registers are memory there) but spills on a GPU. Here each
// invocation owns one query (its q and accumulator, MAX_D / 4 vec4 each)
// and a workgroup of WG queries of one (batch, head) walks the keys in
// tiles of KT: the workgroup stages a tile's K and V rows in workgroup
// memory (each row loaded from memory once per workgroup, coalesced), then
// every invocation scores the tile's keys, rescales its running sum once
// per tile (online softmax in log2 units) and accumulates P·V.
//
// Dispatch: B · Hq · q_blocks workgroups, q_blocks = ceil(Lq / WG).

override WG: u32 = 64u;
override D4: u32 = (D + 3u) / 4u;

const MAX_D: u32 = MAX_D_PLACEHOLDER;
const KT: u32 = 16u;

// K and V element by element (the rest of the bindings: attention_common.wgsl).
@group(0) @binding(1) var<storage, read> ks: array<KV_T>;
@group(0) @binding(2) var<storage, read> vs: array<KV_T>;

// Tile row j, chunk c (dims 4c .. 4c+3, zero past D).
var<workgroup> kt: array<vec4<f32>, KT * MAX_D / 4u>;
var<workgroup> vt: array<vec4<f32>, KT * MAX_D / 4u>;
// Key bias of the tile's keys, in log2 units (NEG for keys past Lk).
var<workgroup> kb: array<f32, KT>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let blk = block_of(flat_workgroup(wid, nwg));
    let b = blk.b;
    let h = blk.h;
    let qb = blk.qb;
    let k_base = blk.k_base;
    let v_base = blk.v_base;

    // This lane's query; lanes past the end compute the last one and skip
    // the store (every lane must reach the barriers).
    let t = qb * WG + lid;
    let tq = min(t, p.lq - 1u);
    let rq = p.q_off + (b * p.lq + tq) * p.q_stride + h * D;
    var q: array<vec4<f32>, MAX_D / 4u>;
    var acc: array<vec4<f32>, MAX_D / 4u>;
    for (var c = 0u; c < D4; c++) {
        var v = vec4(0.0);
        for (var e = 0u; e < 4u; e++) {
            let d = 4u * c + e;
            if d < D {
                v[e] = f32(qs[rq + d]);
            }
        }
        q[c] = v * p.scale_log2;
        acc[c] = vec4(0.0);
    }
    var m = NEG;
    var l = 0.0;
    var s: array<f32, KT>;

    for (var j0 = 0u; j0 < p.lk; j0 += KT) {
        // Stage KT rows of K and V: element i of the tile is row i / D4,
        // chunk i % D4.
        for (var i = lid; i < KT * D4; i += WG) {
            let j = j0 + i / D4;
            let c = i % D4;
            var kv = vec4(0.0);
            var vv = vec4(0.0);
            if j < p.lk {
                for (var e = 0u; e < 4u; e++) {
                    let d = 4u * c + e;
                    if d < D {
                        kv[e] = f32(ks[k_base + j * p.k_stride + d]);
                        vv[e] = f32(vs[v_base + j * p.v_stride + d]);
                    }
                }
            }
            kt[(i / D4) * (MAX_D / 4u) + c] = kv;
            vt[(i / D4) * (MAX_D / 4u) + c] = vv;
        }
        for (var i = lid; i < KT; i += WG) {
            kb[i] = key_bias_log2(b, j0 + i);
        }
        workgroupBarrier();

        // Scores of this tile and their maximum.
        var tile_max = NEG;
        for (var j = 0u; j < KT; j++) {
            var dot_qk = 0.0;
            for (var c = 0u; c < D4; c++) {
                dot_qk += dot(q[c], kt[j * (MAX_D / 4u) + c]);
            }
            s[j] = dot_qk + kb[j];
            tile_max = max(tile_max, s[j]);
        }
        // Rescale once per tile, then add P · V (masked keys weigh 0).
        let m_new = max(m, tile_max);
        let alpha = exp2(m - m_new);
        l *= alpha;
        for (var c = 0u; c < D4; c++) {
            acc[c] *= alpha;
        }
        for (var j = 0u; j < KT; j++) {
            let pj = select(exp2(s[j] - m_new), 0.0, kb[j] <= NEG);
            l += pj;
            for (var c = 0u; c < D4; c++) {
                acc[c] += pj * vt[j * (MAX_D / 4u) + c];
            }
        }
        m = m_new;
        workgroupBarrier();
    }

    if t < p.lq {
        // A query whose keys are all masked has l = 0 and outputs 0.
        let inv = select(0.0, 1.0 / l, l > 0.0);
        let row = ((b * p.lq + t) * p.hq + h) * D;
        for (var c = 0u; c < D4; c++) {
            for (var e = 0u; e < 4u; e++) {
                let d = 4u * c + e;
                if d < D {
                    out[row + d] = O_T(acc[c][e] * inv);
                }
            }
        }
    }
}

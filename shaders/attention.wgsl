// Attention without the score matrix (flash-attention style online softmax):
//
//   out[b, i, h, :] = Σ_j softmax_j(scale · Q[b, i, h, :]·K[b, j, g, :] + bias[h, i, j]
//                                   + key_bias[b, j] | j ≤ i + causal_off) · V[b, j, g, :]
//
// with g = h / group (grouped-query heads share a kv head). Masked keys
// (key_bias −∞, or past i + causal_off when CAUSAL) get no weight; a query
// whose keys are all masked outputs 0. The bias (BIASED) is shared across
// the batch and must be finite. A key bias of ln m weighs a key as m copies
// of it (how a model leaves out m − 1 identical rows).
//
// Layout: token-major rows. Element d of head h of token t of batch b lives
// at  off + (b · len + t) · stride + h · D + d  (in f32 elements) of its
// buffer, so Q, K and V may be slices of one fused buffer; out is contiguous
// [B, Lq, Hq, D].
//
// Design, for software rasterisers first (lavapipe): no barriers, and no
// small loops that must be unrolled to be fast (wgpu's loop bounding keeps
// Mesa from unrolling, and a loop-indexed private array access is then a
// per-lane gather or scatter). Each invocation owns 4 queries of one
// (batch, head); a key block is 8 keys, two 4×4 tiles whose columns are keys
// and whose rows are the 4 queries, so for each 4-dim chunk c
//   scores += Q_c · K_c        (Q_c: dims as columns)
//   acc_c   = acc_c · α + P · V_cᵀ
// are whole-matrix products, with one running-max rescale α per block. The
// only loop-indexed private arrays left are the queries and accumulators,
// touched once per chunk per 8 keys. All lanes of a workgroup read the same
// K and V rows; each vec4 load feeds 16 multiply-adds. Scores are in log2
// units (scale · log2 e folded into Q, the bias times log2 e) so the
// softmax uses exp2. Those two MAX_D-entry private arrays make lavapipe take
// ~5 s to compile a variant with MAX_D = 128 (Mesa's disk cache keeps it
// afterwards). WGSL array sizes cannot be overrides, so MAX_D is a template
// token (src/gpu/shaders.rs). Head dims above 128 do not come here: their
// scores are a matrix product and this kernel only applies the softmax to
// them (kernels/attention.rs, `attention_wide`); a 512-entry variant took
// lavapipe ~2 min to compile and lost the device on an NVIDIA H100.
//
// Bindings: 0 q (f32), 1 k, 2 v (f32 read as vec4), 3 key_bias (f32 [B, Lk];
// any buffer when KEY_BIASED = 0), 4 bias (f32 [Hq, Lq, Lk]; any buffer when
// BIASED = 0), 5 out, 6 params. Dispatch: B · Hq · q_blocks workgroups,
// q_blocks = ceil(Lq / (4 · WG)). Overrides: D head dim (≤ MAX_D), WG
// workgroup size, KEY_BIASED 0/1, CAUSAL 0/1 (keys j ≤ i + p.causal_off only),
// BIASED 0/1, ALIGNED 1 when every K and V row starts on a 4-element boundary
// (offsets and strides multiples of 4, D % 4 == 0). Q_T, KV_T, O_T: the
// element types of Q, of K and V, and of out (f32 or f16; scores, softmax
// and sums in f32).

override WG: u32 = 64u;
override CAUSAL: u32 = 0u;
override BIASED: u32 = 0u;
override ALIGNED: u32 = 1u;
override D4: u32 = (D + 3u) / 4u;

const MAX_D: u32 = MAX_D_PLACEHOLDER;

// K and V as vec4 words (the rest of the bindings: attention_common.wgsl).
@group(0) @binding(1) var<storage, read> ks: array<vec4<KV_T>>;
@group(0) @binding(2) var<storage, read> vs: array<vec4<KV_T>>;

// Elements e .. e+3 out of the words lo = word(e / 4) and hi = the next one,
// with dims past D zeroed by select, so poison past a row never gets in as
// 0 · NaN.
fn assemble(lo: vec4<f32>, hi: vec4<f32>, e: u32, c: u32) -> vec4<f32> {
    var x = lo;
    switch e % 4u {
        case 1u: { x = vec4(lo.yzw, hi.x); }
        case 2u: { x = vec4(lo.zw, hi.xy); }
        case 3u: { x = vec4(lo.w, hi.xyz); }
        default: {}
    }
    if D % 4u != 0u {
        x = select(vec4(0.0), x, vec4(4u * c) + vec4(0u, 1u, 2u, 3u) < vec4(D));
    }
    return x;
}

// Dims 4c .. 4c+3 of the K (V) row that starts at element r.
fn k_chunk(r: u32, c: u32) -> vec4<f32> {
    if ALIGNED != 0u {
        return vec4<f32>(ks[r / 4u + c]);
    }
    let e = r + 4u * c;
    return assemble(vec4<f32>(ks[e / 4u]), vec4<f32>(ks[e / 4u + 1u]), e, c);
}

fn v_chunk(r: u32, c: u32) -> vec4<f32> {
    if ALIGNED != 0u {
        return vec4<f32>(vs[r / 4u + c]);
    }
    let e = r + 4u * c;
    return assemble(vec4<f32>(vs[e / 4u]), vec4<f32>(vs[e / 4u + 1u]), e, c);
}

// Chunk c of 4 keys: column k holds dims 4c .. 4c+3 of key k.
fn k_tile(rows: vec4<u32>, c: u32) -> mat4x4<f32> {
    return mat4x4(k_chunk(rows.x, c), k_chunk(rows.y, c), k_chunk(rows.z, c), k_chunk(rows.w, c));
}

// The same for V, transposed: column e holds dim 4c + e of the 4 keys.
fn v_tile_t(rows: vec4<u32>, c: u32) -> mat4x4<f32> {
    return transpose(mat4x4(v_chunk(rows.x, c), v_chunk(rows.y, c), v_chunk(rows.z, c), v_chunk(rows.w, c)));
}

// Which of the 4 queries (rows) may see each of the 4 keys (columns) of a
// tile: the key is in range and unmasked (ok), and with CAUSAL at most
// lim = query + causal_off.
struct Valid {
    c0: vec4<bool>,
    c1: vec4<bool>,
    c2: vec4<bool>,
    c3: vec4<bool>,
}

fn valid(ok: vec4<bool>, j: vec4<u32>, lim: vec4<u32>) -> Valid {
    if CAUSAL != 0u {
        return Valid(vec4(ok.x) & (vec4(j.x) <= lim), vec4(ok.y) & (vec4(j.y) <= lim),
                     vec4(ok.z) & (vec4(j.z) <= lim), vec4(ok.w) & (vec4(j.w) <= lim));
    }
    return Valid(vec4(ok.x), vec4(ok.y), vec4(ok.z), vec4(ok.w));
}

// Bias of the tile in log2 units: column k, row i is bias[h, tq[i], j[k]].
fn bias_tile(rows: vec4<u32>, j: vec4<u32>) -> mat4x4<f32> {
    return mat4x4(vec4(bias[rows.x + j.x], bias[rows.y + j.x], bias[rows.z + j.x], bias[rows.w + j.x]),
                  vec4(bias[rows.x + j.y], bias[rows.y + j.y], bias[rows.z + j.y], bias[rows.w + j.y]),
                  vec4(bias[rows.x + j.z], bias[rows.y + j.z], bias[rows.z + j.z], bias[rows.w + j.z]),
                  vec4(bias[rows.x + j.w], bias[rows.y + j.w], bias[rows.z + j.w], bias[rows.w + j.w])) * LOG2E;
}

// Scores with the entries of invalid (query, key) pairs replaced by NEG.
fn masked(s: mat4x4<f32>, v: Valid) -> mat4x4<f32> {
    let neg = vec4(NEG);
    return mat4x4(select(neg, s[0], v.c0), select(neg, s[1], v.c1),
                  select(neg, s[2], v.c2), select(neg, s[3], v.c3));
}

fn col_max(s: mat4x4<f32>) -> vec4<f32> {
    return max(max(s[0], s[1]), max(s[2], s[3]));
}

// Unnormalised probabilities; exactly 0 for invalid keys even when every
// score so far is NEG.
fn probs(s: mat4x4<f32>, v: Valid, m: vec4<f32>) -> mat4x4<f32> {
    let z = vec4(0.0);
    return mat4x4(select(z, exp2(s[0] - m), v.c0), select(z, exp2(s[1] - m), v.c1),
                  select(z, exp2(s[2] - m), v.c2), select(z, exp2(s[3] - m), v.c3));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let blk = block_of(flat_workgroup(wid, nwg));
    let b = blk.b;
    let h = blk.h;
    let qb = blk.qb;
    let k_base = blk.k_base;
    let v_base = blk.v_base;

    // This lane's queries are t0 + i · WG, i < 4. Lanes past the end work
    // on the last query and skip the store.
    let t0 = qb * 4u * WG + lid;
    let tq = min(vec4(t0) + vec4(0u, 1u, 2u, 3u) * WG, vec4(p.lq - 1u));
    let rq = vec4(p.q_off) + (vec4(b * p.lq) + tq) * p.q_stride + vec4(h * D);

    // q[c] column e and acc[d]: dim 4c + e (d) of the 4 queries, 0 past D.
    var q: array<mat4x4<f32>, MAX_D / 4u>;
    var acc: array<vec4<f32>, MAX_D>;
    for (var c = 0u; c < D4; c++) {
        var m: mat4x4<f32>;
        for (var e = 0u; e < 4u; e++) {
            let d = 4u * c + e;
            let dc = min(d, D - 1u);
            let x = vec4(f32(qs[rq.x + dc]), f32(qs[rq.y + dc]), f32(qs[rq.z + dc]), f32(qs[rq.w + dc])) * p.scale_log2;
            m[e] = select(vec4(0.0), x, d < D);
            acc[d] = vec4(0.0);
        }
        q[c] = m;
    }
    var run_max = vec4(NEG);
    var run_sum = vec4(0.0);
    // Causal: key limits of the 4 queries; no key past the last one's is
    // read (tq.w is the largest).
    let lim = tq + vec4(p.causal_off);
    var j_end = p.lk;
    if CAUSAL != 0u {
        j_end = min(p.lk, lim.w + 1u);
    }
    // Bias rows of the 4 queries.
    let brow = (vec4((h % p.bias_heads) * p.lq) + tq) * p.lk;

    for (var j0 = 0u; j0 < j_end; j0 += 8u) {
        // Keys j0 .. j0+7 as two tiles a and b. The ragged last block
        // repeats the last key and masks it out. (Inline: as a function this
        // ran 10% slower on lavapipe.)
        let ja = vec4(j0) + vec4(0u, 1u, 2u, 3u);
        let jb = ja + vec4(4u);
        let jca = min(ja, vec4(p.lk - 1u));
        let jcb = min(jb, vec4(p.lk - 1u));
        var ok_a = ja < vec4(p.lk);
        var ok_b = jb < vec4(p.lk);
        // Per-key bias in log2 units (0 for masked keys: masked() drops them).
        var kba = vec4(0.0);
        var kbb = vec4(0.0);
        if KEY_BIASED != 0u {
            let row = b * p.lk;
            let wa = vec4(key_bias[row + jca.x], key_bias[row + jca.y], key_bias[row + jca.z], key_bias[row + jca.w]);
            let wb = vec4(key_bias[row + jcb.x], key_bias[row + jcb.y], key_bias[row + jcb.z], key_bias[row + jcb.w]);
            ok_a = ok_a & (wa > vec4(NEG));
            ok_b = ok_b & (wb > vec4(NEG));
            kba = select(vec4(0.0), wa * LOG2E, ok_a);
            kbb = select(vec4(0.0), wb * LOG2E, ok_b);
        }
        let ka = vec4(k_base) + jca * p.k_stride;
        let kb = vec4(k_base) + jcb * p.k_stride;
        let va = vec4(v_base) + jca * p.v_stride;
        let vb = vec4(v_base) + jcb * p.v_stride;
        var sa = mat4x4<f32>();
        var sb = mat4x4<f32>();
        for (var c = 0u; c < D4; c++) {
            let qc = q[c];
            sa += qc * k_tile(ka, c);
            sb += qc * k_tile(kb, c);
        }
        if BIASED != 0u {
            sa += bias_tile(brow, jca);
            sb += bias_tile(brow, jcb);
        }
        if KEY_BIASED != 0u {
            // Column k of a tile is key k for all 4 queries.
            sa += mat4x4(vec4(kba.x), vec4(kba.y), vec4(kba.z), vec4(kba.w));
            sb += mat4x4(vec4(kbb.x), vec4(kbb.y), vec4(kbb.z), vec4(kbb.w));
        }
        let va_ok = valid(ok_a, ja, lim);
        let vb_ok = valid(ok_b, jb, lim);
        sa = masked(sa, va_ok);
        sb = masked(sb, vb_ok);
        let new_max = max(run_max, max(col_max(sa), col_max(sb)));
        let alpha = exp2(run_max - new_max);
        let pa = probs(sa, va_ok, new_max);
        let pb = probs(sb, vb_ok, new_max);
        run_sum = run_sum * alpha + (pa[0] + pa[1] + pa[2] + pa[3]) + (pb[0] + pb[1] + pb[2] + pb[3]);
        run_max = new_max;

        for (var c = 0u; c < D4; c++) {
            let pv = pa * v_tile_t(va, c) + pb * v_tile_t(vb, c);
            for (var e = 0u; e < 4u; e++) {
                acc[4u * c + e] = acc[4u * c + e] * alpha + pv[e];
            }
        }
    }

    let inv = select(vec4(0.0), 1.0 / run_sum, run_sum > vec4(0.0));
    for (var i = 0u; i < 4u; i++) {
        let t = t0 + i * WG;
        if t < p.lq {
            let row = ((b * p.lq + t) * p.hq + h) * D;
            for (var d = 0u; d < D; d++) {
                out[row + d] = O_T(acc[d][i] * inv[i]);
            }
        }
    }
}

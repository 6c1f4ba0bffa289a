// Row gather and scatter by an index buffer (RAS token selection, embedding
// lookup).
//
//   gather  (entry `gather`):  out[i, :] = src[idx[i] - row_start, :]  for rows of
//           this source chunk (row_start <= idx[i] < row_start + src_rows); other
//           rows are left for the launch over the chunk that holds them.
//           src may be f32, f16 or bf16 (SRC_DTYPE); out is f32 or f16 (DST_T).
//   convert (entry `convert`): out[i] = src[i] in out's element type.
//   scatter (entry `scatter`): out[idx[i], col_off .. col_off + d] = src[i, :]
//           in an out of dst_cols columns; rows not named by idx, and the
//           other columns, are untouched (out is updated in place).
//
// Bindings: 0 src, 1 idx (u32), 2 out, 3 params.
// Dispatch: ceil(count * d / 256) workgroups, count = number of indices.

override SRC_DTYPE: u32 = 0u;

struct Params {
    total: u32,
    d: u32,
    row_start: u32,
    src_rows: u32,
    dst_cols: u32,
    col_off: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<DST_T>;
@group(0) @binding(3) var<uniform> p: Params;

fn src_at(i: u32) -> f32 {
    return decode(SRC_DTYPE, src[word_index(SRC_DTYPE, i)], i);
}

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if i >= p.total {
        return;
    }
    let row = idx[i / p.d];
    if row < p.row_start || row - p.row_start >= p.src_rows {
        return;
    }
    out[i] = DST_T(src_at((row - p.row_start) * p.d + i % p.d));
}

// Every element converted to DST_T (an f32 tensor to f16 activations).
@compute @workgroup_size(256)
fn convert(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if i >= p.total {
        return;
    }
    out[i] = DST_T(src_at(i));
}

@compute @workgroup_size(256)
fn scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if i >= p.total {
        return;
    }
    out[idx[i / p.d] * p.dst_cols + p.col_off + i % p.d] = DST_T(src_at(i));
}

// Non-finite detection: flag[0] = min(flag[0], code) when x holds a NaN or
// an infinity anywhere. The flag starts at 0xffffffff and collects, over
// many launches, the smallest code that saw one (the loop encodes step and
// stage in the code, so the flag names where garbage first appeared).
//
// A value is non-finite when its exponent bits are all ones; f16 values are
// widened to f32 first, which keeps NaN and infinities.
//
// Bindings: 0 x [n] in ACT_T (f32 or f16), 1 flag [1] u32 (atomic), 2 params.
// Dispatch: ceil(n / 256) workgroups (folded into 2-D above the limit).

struct Params {
    n: u32,
    code: u32,
}

@group(0) @binding(0) var<storage, read> x: array<ACT_T>;
@group(0) @binding(1) var<storage, read_write> flag: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    if (bitcast<u32>(f32(x[i])) & 0x7f800000u) == 0x7f800000u {
        atomicMin(&flag[0], p.code);
    }
}

// A decoded image [1, 3, H, W] (values about [-1, 1]) into a host
// application's storage texture, as diffusers' postprocess maps it:
// clamp(x / 2 + 0.5, 0, 1) per channel, alpha 1. One entry point per
// texture format; each uses only its own binding.

struct Params {
    width: u32,
    height: u32,
}

@group(0) @binding(0) var<storage, read> image: array<f32>;
@group(0) @binding(1) var out_rgba8: texture_storage_2d<rgba8unorm, write>;
@group(0) @binding(2) var out_rgba16f: texture_storage_2d<rgba16float, write>;
@group(0) @binding(3) var<uniform> params: Params;

fn pixel(x: u32, y: u32) -> vec4<f32> {
    let plane = params.width * params.height;
    let i = y * params.width + x;
    let rgb = vec3<f32>(image[i], image[plane + i], image[2u * plane + i]);
    return vec4<f32>(clamp(rgb * 0.5 + 0.5, vec3<f32>(0.0), vec3<f32>(1.0)), 1.0);
}

@compute @workgroup_size(8, 8)
fn to_rgba8(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < params.width && id.y < params.height {
        textureStore(out_rgba8, vec2<u32>(id.x, id.y), pixel(id.x, id.y));
    }
}

@compute @workgroup_size(8, 8)
fn to_rgba16f(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < params.width && id.y < params.height {
        textureStore(out_rgba16f, vec2<u32>(id.x, id.y), pixel(id.x, id.y));
    }
}

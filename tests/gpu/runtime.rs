//! The runtime itself: errors come back as values, host devices can be
//! handed in, the pool recycles buffers.

use ras::gpu::{DType, Gpu, GpuOptions, Kernel};
use ras::kernels::elementwise;
use ras::Error;

use crate::common::gpu;

#[test]
fn unknown_shader_is_a_compile_error() {
    let gpu = gpu();
    let x = gpu.upload_f32(&[1.0; 4], &[4]).unwrap();
    let err = gpu
        .dispatch(
            &Kernel::new("no_such_kernel"),
            &[x.arg().unwrap()],
            &[],
            &[0; 16],
            1,
        )
        .unwrap_err();
    assert!(matches!(err, Error::ShaderCompile { .. }), "{err}");
}

#[test]
fn validation_error_is_a_result_not_a_panic() {
    let gpu = gpu();
    let x = gpu.upload_f32(&[1.0; 4], &[4]).unwrap();
    gpu.flush().unwrap();
    // The same buffer bound as read-only input and writable output in one
    // dispatch is a usage conflict that wgpu rejects.
    let params = [4u32, 4, 4, 0, 0, 0, 0, 0];
    let kernel = Kernel::new("elementwise").constant("OP", 0);
    let a = x.arg().unwrap();
    gpu.dispatch(
        &kernel,
        &[a, x.arg().unwrap()],
        &[x.arg().unwrap()],
        bytemuck::cast_slice(&params),
        1,
    )
    .unwrap();
    let err = gpu.flush().unwrap_err();
    assert!(matches!(err, Error::Validation { .. }), "{err}");
    // The device stays usable afterwards.
    let y = elementwise::scale(&gpu, &x, 2.0).unwrap();
    assert_eq!(gpu.read_f32(&y).unwrap(), [2.0; 4]);
}

#[test]
fn host_application_can_hand_in_its_device() {
    let _serial = gpu();
    // What a game engine does: its own instance, adapter and device.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
        .expect("an adapter (install mesa-vulkan-drivers without a GPU)");
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let gpu = Gpu::from_device(device, queue, adapter.get_info(), &GpuOptions::default());
    let a = gpu.upload_f32(&[1.0, 2.0, 3.0], &[3]).unwrap();
    let b = gpu.upload_f32(&[10.0, 20.0, 30.0], &[3]).unwrap();
    let c = elementwise::add(&gpu, &a, &b).unwrap();
    assert_eq!(gpu.read_f32(&c).unwrap(), [11.0, 22.0, 33.0]);
}

#[test]
fn pool_recycles_buffers_and_tracks_peak() {
    let gpu = gpu();
    gpu.flush().unwrap();
    gpu.trim();
    let before = gpu.memory();
    let t = gpu.empty(&[1000, 10], DType::F32).unwrap();
    let after_alloc = gpu.memory();
    assert_eq!(after_alloc.live_bytes - before.live_bytes, 40_192); // 40 000 rounded to 256
    drop(t);
    let after_drop = gpu.memory();
    assert_eq!(after_drop.live_bytes, before.live_bytes);
    assert_eq!(after_drop.cached_bytes, 40_192);
    let _again = gpu.empty(&[10, 1000], DType::F32).unwrap();
    assert_eq!(
        gpu.memory().cached_bytes,
        0,
        "a same-size request must reuse the cached buffer"
    );
    assert!(gpu.memory().peak_bytes >= after_alloc.live_bytes + after_alloc.weight_bytes);
}

/// A read started with read_f32_async sees the tensor as it was when the
/// read was started, even after later work overwrites it, and recording
/// more work in between is allowed.
#[test]
fn async_read_returns_the_values_at_its_submit() {
    use ras::kernels::rows::{scatter, Indices};
    let gpu = gpu();
    let t = gpu.upload_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let pending = gpu.read_f32_async(&t).unwrap();
    let rows = gpu.upload_f32(&[9.0, 9.0], &[1, 2]).unwrap();
    scatter(&gpu, &rows, &Indices::upload(&gpu, &[1]).unwrap(), &t).unwrap();
    gpu.flush().unwrap();
    assert_eq!(gpu.wait_read(pending).unwrap(), [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(gpu.read_f32(&t).unwrap(), [1.0, 2.0, 9.0, 9.0]);
}

/// A device lost in the middle of work (simulated with `Device::destroy`)
/// comes back as an error from the next call, never a panic or a hang, and
/// a new device works afterwards.
#[test]
fn device_loss_is_an_error_and_a_new_device_works() {
    let _serial = gpu();
    let open = || {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .expect("an adapter (install mesa-vulkan-drivers without a GPU)");
        let (device, queue) =
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
        let gpu = Gpu::from_device(device.clone(), queue, adapter.get_info(), &GpuOptions::default());
        (device, gpu)
    };
    let (device, lost) = open();
    let a = lost.upload_f32(&[1.0, 2.0, 3.0], &[3]).unwrap();
    let b = elementwise::add(&lost, &a, &a).unwrap();
    assert_eq!(lost.read_f32(&b).unwrap(), [2.0, 4.0, 6.0]);
    let pending = elementwise::add(&lost, &b, &a).unwrap();
    device.destroy();
    let results = [
        lost.read_f32(&pending).map(drop),
        elementwise::add(&lost, &a, &b)
            .and_then(|c| lost.read_f32(&c))
            .map(drop),
        lost.sync(),
    ];
    for r in &results {
        let err = r.as_ref().expect_err("work on a destroyed device must fail");
        eprintln!("after destroy: {err}");
        assert!(matches!(err, Error::DeviceLost { .. }), "{err}");
        assert!(err.to_string().contains("open a new one"), "{err}");
    }
    let (_device, fresh) = open();
    let c = fresh.upload_f32(&[1.0, 2.0], &[2]).unwrap();
    assert_eq!(
        fresh
            .read_f32(&elementwise::add(&fresh, &c, &c).unwrap())
            .unwrap(),
        [2.0, 4.0]
    );
}

//! Writing a decoded image into a texture the host application owns, on the
//! GPU (no read-back). This touches `wgpu::Texture`, so it lives here rather
//! than in `kernels/`; the shader is `shaders/texture.wgsl`.

use super::context::Gpu;
use super::shaders;
use super::tensor::{DType, Tensor};
use crate::error::{Error, Result};

impl Gpu {
    /// `image [1, 3, H, W]` (f32, values about [-1, 1]) → `texture`
    /// (`Rgba8Unorm` or `Rgba16Float`, `STORAGE_BINDING` usage, at least
    /// W × H), as `clamp(x / 2 + 0.5, 0, 1)` with alpha 1.
    pub fn write_texture(&self, image: &Tensor, texture: &wgpu::Texture) -> Result<()> {
        let &[1, 3, h, w] = image.shape() else {
            return Err(Error::shape("write_texture", "image must be [1, 3, H, W]"));
        };
        if image.dtype() != DType::F32 {
            return Err(Error::shape("write_texture", "image must be f32"));
        }
        let size = texture.size();
        if (size.width as usize) < w || (size.height as usize) < h {
            return Err(Error::Invalid(format!(
                "the texture is {}x{}; the image needs {w}x{h}",
                size.width, size.height
            )));
        }
        if !texture.usage().contains(wgpu::TextureUsages::STORAGE_BINDING) {
            return Err(Error::Invalid(
                "the texture needs TextureUsages::STORAGE_BINDING to be written by a compute shader".into(),
            ));
        }
        let format = texture.format();
        let (entry, binding) = match format {
            wgpu::TextureFormat::Rgba8Unorm => ("to_rgba8", 1),
            wgpu::TextureFormat::Rgba16Float => ("to_rgba16f", 2),
            other => {
                return Err(Error::Invalid(format!(
                    "texture format {other:?} is not supported; use Rgba8Unorm or Rgba16Float"
                )))
            }
        };
        let (pipeline, layout) = self.texture_writer(format, entry, binding)?;
        let device = &self.inner.device;
        // Kernels recorded so far (the decode) go first.
        self.flush()?;
        self.scoped("writing the image into the texture", || {
            let params = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("texture params"),
                size: 16,
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: true,
            });
            params
                .get_mapped_range_mut(..)
                .expect("mapped at creation")
                .copy_from_slice(bytemuck::cast_slice(&[w as u32, h as u32, 0, 0]));
            params.unmap();
            let view = texture.create_view(&Default::default());
            let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: image.chunk_arg(0).buffer.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding,
                        resource: wgpu::BindingResource::TextureView(&view),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: params.as_entire_binding(),
                    },
                ],
            });
            let mut encoder = device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &group, &[]);
                pass.dispatch_workgroups((w as u32).div_ceil(8), (h as u32).div_ceil(8), 1);
            }
            self.submit(encoder.finish());
        })?;
        self.check_lost()
    }

    fn texture_writer(
        &self,
        format: wgpu::TextureFormat,
        entry: &'static str,
        binding: u32,
    ) -> Result<(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        let mut cache = self.inner.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = cache.texture_writers.get(&format) {
            return Ok(found.clone());
        }
        let device = &self.inner.device;
        let compile_error = |message: String| Error::ShaderCompile {
            shader: "texture".into(),
            entry: entry.into(),
            message,
        };
        let source = shaders::source("texture", &[]).ok_or_else(|| compile_error("missing".into()))?;
        let compiled = self
            .scoped("compiling the texture writer", || {
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some("texture"),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
                let compute = wgpu::ShaderStages::COMPUTE;
                let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some("texture writer"),
                    entries: &[
                        wgpu::BindGroupLayoutEntry {
                            binding: 0,
                            visibility: compute,
                            ty: wgpu::BindingType::Buffer {
                                ty: wgpu::BufferBindingType::Storage { read_only: true },
                                has_dynamic_offset: false,
                                min_binding_size: None,
                            },
                            count: None,
                        },
                        wgpu::BindGroupLayoutEntry {
                            binding,
                            visibility: compute,
                            ty: wgpu::BindingType::StorageTexture {
                                access: wgpu::StorageTextureAccess::WriteOnly,
                                format,
                                view_dimension: wgpu::TextureViewDimension::D2,
                            },
                            count: None,
                        },
                        wgpu::BindGroupLayoutEntry {
                            binding: 3,
                            visibility: compute,
                            ty: wgpu::BindingType::Buffer {
                                ty: wgpu::BufferBindingType::Uniform,
                                has_dynamic_offset: false,
                                min_binding_size: None,
                            },
                            count: None,
                        },
                    ],
                });
                let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: None,
                    bind_group_layouts: &[Some(&layout)],
                    immediate_size: 0,
                });
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some("texture writer"),
                    layout: Some(&pl),
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                });
                (pipeline, layout)
            })
            .map_err(|e| compile_error(e.to_string()))?;
        cache.texture_writers.insert(format, compiled.clone());
        Ok(compiled)
    }
}

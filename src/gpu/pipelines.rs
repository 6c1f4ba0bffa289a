//! Compiled pipelines, cached by kernel key. Each kernel's bind-group layout
//! follows one convention: its read-only storage inputs, then its
//! read-write outputs, then one uniform `params` struct, all in group 0;
//! group 1 holds the index of the launch's first workgroup (common.wgsl).

use std::collections::HashMap;

use super::context::Gpu;
use super::shaders;
use crate::error::{Error, Result};

/// What identifies a compiled pipeline: the shader file, the values of its
/// template tokens (see `gpu::shaders::TEMPLATES`; each set is its own shader
/// module), its entry point and the values of its override constants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Kernel {
    pub shader: &'static str,
    pub template: Vec<(&'static str, u32)>,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, u32)>,
}

impl Kernel {
    pub fn new(shader: &'static str) -> Self {
        Kernel {
            shader,
            template: Vec::new(),
            entry: "main",
            constants: Vec::new(),
        }
    }

    pub fn entry(mut self, entry: &'static str) -> Self {
        self.entry = entry;
        self
    }

    /// Substitutes `value` for the template token `token` in the source.
    pub fn template(mut self, token: &'static str, value: u32) -> Self {
        self.template.push((token, value));
        self
    }

    pub fn constant(mut self, name: &'static str, value: u32) -> Self {
        self.constants.push((name, value));
        self
    }
}

pub(crate) struct Compiled {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

type ModuleKey = (&'static str, Vec<(&'static str, u32)>);

#[derive(Default)]
pub(crate) struct PipelineCache {
    /// By shader file and template values.
    modules: HashMap<ModuleKey, wgpu::ShaderModule>,
    layouts: HashMap<(usize, usize), wgpu::BindGroupLayout>,
    /// Group 1 of every kernel: the launch's first workgroup index (see
    /// `gpu::budget`), a dynamic offset into the flush's uniform buffer.
    split: Option<wgpu::BindGroupLayout>,
    pipelines: HashMap<(Kernel, usize, usize), Compiled>,
    /// `shaders/texture.wgsl` by output format (see `gpu::texture`).
    pub texture_writers: HashMap<wgpu::TextureFormat, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn split_layout(cache: &mut PipelineCache, device: &wgpu::Device) -> wgpu::BindGroupLayout {
    cache
        .split
        .get_or_insert_with(|| {
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("first workgroup"),
                entries: &[wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: std::num::NonZeroU64::new(16),
                    },
                    count: None,
                }],
            })
        })
        .clone()
}

impl Gpu {
    /// The layout of group 1 (the first-workgroup index of a launch).
    pub(crate) fn split_layout(&self) -> wgpu::BindGroupLayout {
        let mut cache = self.inner.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        split_layout(&mut cache, &self.inner.device)
    }

    /// Returns the compiled pipeline for `kernel` with `n_in` inputs and
    /// `n_out` outputs, compiling it on first use.
    pub(crate) fn pipeline(
        &self,
        kernel: &Kernel,
        n_in: usize,
        n_out: usize,
    ) -> Result<(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        let mut cache = self.inner.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        let key = (kernel.clone(), n_in, n_out);
        if let Some(c) = cache.pipelines.get(&key) {
            return Ok((c.pipeline.clone(), c.layout.clone()));
        }
        let device = &self.inner.device;
        let compile_error = |message: String| Error::ShaderCompile {
            shader: kernel.shader.into(),
            entry: kernel.entry.into(),
            message,
        };
        let module_key = (kernel.shader, kernel.template.clone());
        if !cache.modules.contains_key(&module_key) {
            let source = shaders::source(kernel.shader, &kernel.template).ok_or_else(|| {
                compile_error(format!(
                    "no such shader in shaders/, or template values {:?} do not match its tokens",
                    kernel.template
                ))
            })?;
            let module = self
                .scoped("compiling a shader", || {
                    device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.shader),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    })
                })
                .map_err(|e| compile_error(e.to_string()))?;
            cache.modules.insert(module_key.clone(), module);
        }
        let layout = cache
            .layouts
            .entry((n_in, n_out))
            .or_insert_with(|| {
                let mut entries: Vec<_> = (0..n_in + n_out)
                    .map(|i| storage_entry(i as u32, i < n_in))
                    .collect();
                entries.push(wgpu::BindGroupLayoutEntry {
                    binding: (n_in + n_out) as u32,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                });
                device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: None,
                    entries: &entries,
                })
            })
            .clone();
        let split = split_layout(&mut cache, device);
        let constants: Vec<(&str, f64)> = kernel.constants.iter().map(|&(n, v)| (n, v as f64)).collect();
        let module = &cache.modules[&module_key];
        let pipeline = self
            .scoped("creating a compute pipeline", || {
                let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: None,
                    bind_group_layouts: &[Some(&layout), Some(&split)],
                    immediate_size: 0,
                });
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.shader),
                    layout: Some(&pl),
                    module,
                    entry_point: Some(kernel.entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
            })
            .map_err(|e| compile_error(e.to_string()))?;
        cache.pipelines.insert(
            key,
            Compiled {
                pipeline: pipeline.clone(),
                layout: layout.clone(),
            },
        );
        Ok((pipeline, layout))
    }
}

//! Parses and validates every shader in `shaders/` with naga, exactly as the
//! runtime composes it (kernel file + common.wgsl). Needs no GPU, so a
//! shader error fails `cargo test` with its file and line even where no
//! adapter exists.

#[test]
fn every_shader_parses_and_validates() {
    let sources = ras::gpu::all_sources();
    let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wgsl"))
        .count();
    // Every kernel file plus common.wgsl and the fragments, which are
    // inside the kernels that use them.
    let files: std::collections::BTreeSet<_> = sources
        .iter()
        .map(|(path, _)| path.split(' ').next().unwrap_or(path))
        .collect();
    assert_eq!(
        files.len() + 1 + ras::gpu::FRAGMENTS.len(),
        on_disk,
        "a shader in shaders/ is not registered in gpu::shaders"
    );
    for (fragment, kernels) in ras::gpu::FRAGMENTS {
        for k in *kernels {
            let (_, source) = sources
                .iter()
                .find(|(path, _)| path.split(' ').next() == Some(&format!("shaders/{k}.wgsl")))
                .unwrap_or_else(|| panic!("{k} of fragment {fragment} is not a kernel"));
            assert!(
                source.contains(&format!("shaders/{fragment}.wgsl")),
                "{k} lacks {fragment}"
            );
        }
    }
    // Template kernels come once per value of each token (and storage
    // types once as f32 and once as f16).
    let templates = ras::gpu::TEMPLATES.iter().map(|&(k, t, v)| (k, t, v)).chain(
        ras::gpu::STORAGE_TYPES
            .iter()
            .map(|&(k, t)| (k, t, &[0u32, 1][..])),
    );
    for (kernel, token, values) in templates {
        for v in values {
            let file = format!("shaders/{kernel}.wgsl");
            let setting = format!("{token}={v}");
            assert!(
                sources
                    .iter()
                    .any(|(path, _)| path.starts_with(&file) && path.contains(&setting)),
                "{file} with {setting} is not validated"
            );
        }
    }
    let mut failures = Vec::new();
    for (path, source) in &sources {
        let module = match naga::front::wgsl::parse_str(source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(e.emit_to_string_with_path(source, path));
                continue;
            }
        };
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        let info = match validator.validate(&module) {
            Ok(info) => info,
            Err(e) => {
                failures.push(e.emit_to_string_with_path(source, path));
                continue;
            }
        };
        // Translating to SPIR-V (what Vulkan runs) catches what validation
        // does not, e.g. in the cooperative-matrix kernels no CI adapter runs.
        // Override constants take their defaults, as a pipeline without
        // constants would.
        let defaults = naga::back::PipelineConstants::default();
        let (module, info) =
            match naga::back::pipeline_constants::process_overrides(&module, &info, None, &defaults) {
                Ok(m) => m,
                Err(e) => {
                    failures.push(format!("{path}: override constants: {e}"));
                    continue;
                }
            };
        let options = naga::back::spv::Options::default();
        if let Err(e) = naga::back::spv::write_vec(&module, &info, &options, None) {
            failures.push(format!("{path}: SPIR-V translation failed: {e}"));
        }
    }
    assert!(failures.is_empty(), "shader errors:\n{}", failures.join("\n"));
}

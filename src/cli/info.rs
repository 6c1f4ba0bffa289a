//! `ras info`: the adapters, their features and limits, and the one `ras`
//! would pick.

use anyhow::Result;

pub fn run(device: &super::DeviceArgs) -> Result<()> {
    let adapters = ras::gpu::list_adapters();
    if adapters.is_empty() {
        anyhow::bail!(
            "no GPU adapter found. Without a GPU install Mesa's software Vulkan driver: \
             `apt-get install -y mesa-vulkan-drivers`"
        );
    }
    println!(
        "{:>2} {:<40} {:<7} {:<13} {:<8} {:>10} {:>10} {:>8} {:>9}  features",
        "#", "adapter", "backend", "type", "compute", "binding", "buffer", "wg mem", "subgroup"
    );
    for (i, a) in adapters.iter().enumerate() {
        println!(
            "{:>2} {:<40} {:<7} {:<13} {:<8} {:>10} {:>10} {:>8} {:>9}  {}",
            i,
            truncate(&a.name, 40),
            a.backend,
            a.device_type,
            if a.compute { "yes" } else { "no" },
            mib(a.max_storage_binding),
            mib(a.max_buffer),
            format!("{}K", a.max_workgroup_storage / 1024),
            format!("{}-{}", a.subgroup_size.0, a.subgroup_size.1),
            a.features.join(",")
        );
    }
    let gpu = super::open(device)?;
    println!("\nselected: {} ({})", gpu.adapter_name(), gpu.backend());
    let memory = |b: Option<u64>, none: &str| b.map_or(none.to_owned(), |b| format!("{} MiB", b >> 20));
    let submits = match gpu.submit_budget().max_ms {
        ms if ms.is_finite() => format!("at most {ms} estimated ms each"),
        _ => "no bound (--max-submit-ms)".into(),
    };
    println!(
        "device memory: {}; budget: {}; submits: {submits}",
        memory(gpu.device_memory(), "not reported by this backend"),
        memory(gpu.memory_budget(), "none (--max-gpu-memory)"),
    );
    let runnable: Vec<&str> = ras::kernels::variant::runnable(&gpu)
        .iter()
        .map(|v| v.name())
        .collect();
    println!(
        "kernel variants (runnable here: {}; {}=portable|tiled|coopmat forces one):",
        runnable.join(", "),
        ras::kernels::variant::ENV
    );
    let variants = ras::kernels::variant::variants(&gpu)?;
    for (family, choice) in [("linear", &variants.linear), ("attention", &variants.attention)] {
        println!("  {family:<10} {:<9} {}", choice.variant.name(), choice.reason);
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{}M", bytes >> 20)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

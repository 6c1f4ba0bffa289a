//! Which implementation of a kernel family a device runs. The choice is
//! made once per device by `kernels::variant` (features, self-test, the
//! `RAS_KERNELS` override) and kept here with the device.

use std::sync::Arc;

use super::context::Gpu;

/// Implementations of a kernel family, from the most portable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Register tiles, no workgroup memory or barriers: the fastest on
    /// software adapters, runs everywhere.
    Portable,
    /// Workgroup-memory tiles: for hardware GPUs.
    Tiled,
    /// Tensor cores through cooperative matrices (f16 products, f32 sums).
    Coopmat,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Portable, Variant::Tiled, Variant::Coopmat];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Portable => "portable",
            Variant::Tiled => "tiled",
            Variant::Coopmat => "coopmat",
        }
    }

    pub fn parse(s: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == s)
    }
}

/// One family's variant and why it was chosen.
#[derive(Debug, Clone)]
pub struct Choice {
    pub variant: Variant,
    pub reason: String,
    /// Set when a faster variant was passed over because it failed its
    /// self-test: worth telling the user.
    pub warning: Option<String>,
}

/// The variant of each kernel family that has several.
#[derive(Debug, Clone)]
pub struct Variants {
    pub linear: Choice,
    pub attention: Choice,
}

impl Gpu {
    /// The variants chosen for this device, if chosen yet.
    pub fn chosen_variants(&self) -> Option<Arc<Variants>> {
        self.inner
            .variants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the variants for this device (first choice wins).
    pub fn set_variants(&self, variants: Variants) -> Arc<Variants> {
        let mut slot = self.inner.variants.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| Arc::new(variants)).clone()
    }

    /// The adapter and driver, for caching per-device verdicts.
    pub fn driver_key(&self) -> String {
        let i = &self.inner.info;
        format!("{} | {:?} | {} | {}", i.name, i.backend, i.driver, i.driver_info)
    }

    /// The adapter's subgroup size when it is fixed (min = max).
    pub fn fixed_subgroup_size(&self) -> Option<u32> {
        let i = &self.inner.info;
        (i.subgroup_min_size == i.subgroup_max_size && self.inner.caps.subgroups)
            .then_some(i.subgroup_min_size)
    }
}

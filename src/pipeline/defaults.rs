//! Each model family's sampling defaults, as its diffusers pipeline and the
//! original RAS example scripts have them (model-spec §C, ras-spec §2.3).

use crate::models::Family;
use crate::ras::RasConfig;

/// Steps, guidance and timestep shift of a family's pipeline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Defaults {
    pub steps: usize,
    pub guidance: f32,
    /// Used when the model folder has no scheduler config.
    pub shift: f64,
}

pub fn defaults(family: Family) -> Defaults {
    match family {
        Family::Sd3 => Defaults {
            steps: 28,
            guidance: 7.0,
            shift: 3.0,
        },
        Family::Lumina => Defaults {
            steps: 30,
            guidance: 4.0,
            shift: 1.0,
        },
    }
}

/// The original's RAS example for the family, fitted to `steps` steps over
/// `tokens` image tokens.
pub fn ras_defaults(family: Family, steps: usize, tokens: usize) -> RasConfig {
    match family {
        Family::Sd3 => RasConfig::sd3_example(steps),
        Family::Lumina => RasConfig::lumina_example(steps, tokens),
    }
}

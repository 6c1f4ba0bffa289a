//! diffusers' `FlowMatchEulerDiscreteScheduler` (model-spec §C.1), with its
//! float precisions reproduced: the training table in f32, the inference
//! schedule in f64, stored as f32.

/// Sigmas and timesteps of one sampling run.
#[derive(Debug, Clone)]
pub struct FlowMatchEuler {
    /// `steps + 1` noise levels, ending with 0.
    pub sigmas: Vec<f32>,
    /// What the transformer is given at each step (`sigma · 1000`).
    pub timesteps: Vec<f32>,
}

const TRAIN_STEPS: f64 = 1000.0;

impl FlowMatchEuler {
    /// `shift` comes from `scheduler_config.json` (3.0 for SD3).
    pub fn new(steps: usize, shift: f64) -> FlowMatchEuler {
        // The constructor's table is f32; only its ends are used.
        let shift32 = |s: f32| shift as f32 * s / (1.0 + (shift as f32 - 1.0) * s);
        // The table runs from t = 1000 (sigma 1) down to t = 1.
        let sigma_max = shift32(1.0) as f64;
        let sigma_min = shift32(1.0 / TRAIN_STEPS as f32) as f64;
        let (t0, t1) = (sigma_max * TRAIN_STEPS, sigma_min * TRAIN_STEPS);
        let mut sigmas: Vec<f32> = (0..steps)
            .map(|i| {
                // numpy's linspace: start + i·step, with the last point exact.
                let t = if i + 1 == steps && steps > 1 {
                    t1
                } else {
                    t0 + i as f64 * ((t1 - t0) / (steps.max(2) - 1) as f64)
                };
                let s = t / TRAIN_STEPS;
                (shift * s / (1.0 + (shift - 1.0) * s)) as f32
            })
            .collect();
        let timesteps = sigmas.iter().map(|&s| s * TRAIN_STEPS as f32).collect();
        sigmas.push(0.0);
        FlowMatchEuler { sigmas, timesteps }
    }

    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// `σ_{i+1} − σ_i` in f32, the Euler step size (negative).
    pub fn dsigma(&self, i: usize) -> f32 {
        self.sigmas[i + 1] - self.sigmas[i]
    }
}

#[cfg(test)]
mod tests {
    use super::FlowMatchEuler;

    #[test]
    fn sd3_default_timesteps() {
        // model-spec §C.1, 28 steps, shift 3.
        let want = [
            1000.000, 987.381, 974.108, 960.129, 945.387, 929.818, 913.349, 895.900, 877.382, 857.692,
            836.717, 814.325, 790.368, 764.677, 737.056, 707.278, 675.082, 640.160, 602.151, 560.625,
            515.072, 464.876, 409.289, 347.393, 278.049, 199.827, 110.906, 8.929,
        ];
        let s = FlowMatchEuler::new(28, 3.0);
        assert_eq!(s.sigmas.len(), 29);
        assert_eq!(s.sigmas[28], 0.0);
        for (got, want) in s.timesteps.iter().zip(want) {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
    }

    #[test]
    fn lumina_default_sigmas() {
        let s = FlowMatchEuler::new(30, 1.0);
        assert!((s.sigmas[0] - 1.0).abs() < 1e-7);
        assert!((s.sigmas[1] - 0.965552).abs() < 1e-6);
        assert!((s.sigmas[29] - 0.001).abs() < 1e-7);
    }
}

/// The timestep shifts a scheduler config may set.
pub const SHIFT_RANGE: (f64, f64) = (1e-3, 1e3);

/// The settings of a diffusers `scheduler/scheduler_config.json` that the
/// engine honours.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    pub shift: f64,
}

impl SchedulerConfig {
    pub fn from_file(path: &std::path::Path) -> crate::Result<SchedulerConfig> {
        Self::from_json(&crate::config::read_text(path)?, path)
    }

    /// Parses and checks the text of a `scheduler_config.json`; `path`
    /// names the file in errors.
    pub fn from_json(text: &str, path: &std::path::Path) -> crate::Result<SchedulerConfig> {
        let err = |message: String| crate::config::config_error(path, message);
        let json: serde_json::Value = crate::config::parse_json(text, path)?;
        let class = json["_class_name"].as_str().unwrap_or("");
        if class != "FlowMatchEulerDiscreteScheduler" {
            return Err(err(format!(
                "scheduler '{class}' is not supported; SD3 uses FlowMatchEulerDiscreteScheduler"
            )));
        }
        if json["use_dynamic_shifting"].as_bool() == Some(true) {
            return Err(err(
                "use_dynamic_shifting (resolution-dependent shift) is not supported".into(),
            ));
        }
        let shift = json["shift"].as_f64().unwrap_or(1.0);
        // Outside this range the f32 noise table rounds to 0/0: NaN sigmas.
        if !(SHIFT_RANGE.0..=SHIFT_RANGE.1).contains(&shift) {
            return Err(err(format!(
                "shift {shift} must be between {} and {} (SD3 uses 3.0, Lumina-Next 1.0)",
                SHIFT_RANGE.0, SHIFT_RANGE.1
            )));
        }
        Ok(SchedulerConfig { shift })
    }
}

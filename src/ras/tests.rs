//! The planner against the tables of ras-spec §3.5 and the defects of §9.

use super::*;
use crate::kernels::metric::Metric;

fn sd3_example() -> Schedule {
    Schedule::new(&RasConfig::sd3_example(28), 28, 4096).unwrap()
}

#[test]
fn sd3_example_table() {
    let s = sd3_example();
    let cfg = RasConfig::sd3_example(28);
    assert_eq!(cfg.error_reset_steps, [12, 20]);
    let ras: Vec<usize> = (0..28).filter(|&i| s.kind(i) == StepKind::Ras).collect();
    assert_eq!(ras.len(), 22);
    let dense: Vec<usize> = (0..28).filter(|&i| s.kind(i) != StepKind::Ras).collect();
    assert_eq!(dense, [0, 1, 2, 3, 12, 20]);
    let refresh: Vec<usize> = (0..28)
        .filter(|&i| s.kind(i) == StepKind::Dense { refresh: true })
        .collect();
    assert_eq!(refresh, [3, 12, 20]);
    let selections: Vec<usize> = (0..28).filter(|&i| s.selects_after(i)).collect();
    let want: Vec<usize> = (3..=10).chain(12..=18).chain(20..=26).collect();
    assert_eq!(selections, want);
    // 2048 skipped, split 1433 low + 614 high: 2049 active on every RAS step.
    let mut p = Planner::new(&cfg, s, 1);
    let scores: Vec<f32> = (0..4096).map(|i| ((i * 7919) % 4096) as f32).collect();
    for &i in &ras {
        assert_eq!(p.select(i, &scores).unwrap().active_count(), 2049, "step {i}");
    }
}

#[test]
fn lumina_dynamic_example_table() {
    let cfg = RasConfig::lumina_example(30, 4096);
    assert_eq!(
        cfg,
        RasConfig {
            sample_ratio: 0.5,
            metric: Metric::Std,
            high_ratio: 1.0,
            starvation_scale: 0.1,
            scheduler_start_step: 4,
            scheduler_end_step: 30,
            error_reset_steps: vec![12, 22],
            skip_num_step: 256,
            skip_num_step_length: 4,
        }
    );
    let s = Schedule::new(&cfg, 30, 4096).unwrap();
    let want_skip = [
        0, 0, 0, 0, 1280, 1280, 1280, 1280, 1536, 1536, 1536, 1536, 0, 1792, 1792, 1792, 2048, 2048, 2048,
        2048, 2304, 2304, 0, 2304, 2560, 2560, 2560, 2560, 2816, 2816,
    ];
    let skip: Vec<usize> = (0..30).map(|i| s.skip(i)).collect();
    assert_eq!(skip, want_skip);
    assert_eq!((0..30).filter(|&i| s.kind(i) == StepKind::Ras).count(), 24);
    let mut p = Planner::new(&cfg, s, 1);
    let scores: Vec<f32> = (0..4096).map(|i| i as f32).collect();
    assert_eq!(p.select(4, &scores).unwrap().active_count(), 2816);
    assert_eq!(p.select(29, &scores).unwrap().active_count(), 1280);
}

#[test]
fn end_step_reuses_previous_selection() {
    // e = 7 < N - 1: step 7 is RAS (inclusive), but no selection is made
    // after step 6 (strict), and steps after 7 are dense.
    let cfg = RasConfig {
        scheduler_start_step: 2,
        scheduler_end_step: 7,
        error_reset_steps: vec![4],
        ..RasConfig::sd3_example(10)
    };
    let s = Schedule::new(&cfg, 10, 16).unwrap();
    assert_eq!(s.kind(7), StepKind::Ras);
    assert!(!s.selects_after(6));
    assert!(s.selects_after(5));
    assert_eq!(s.kind(8), StepKind::Dense { refresh: false });
    assert!(!s.cache_live_after(7));
    assert!(s.cache_live_after(6));
}

#[test]
fn split_takes_high_and_low_ends() {
    let mut cfg = RasConfig::sd3_example(28);
    cfg.starvation_scale = 0.0;
    let scores: Vec<f32> = (0..10).map(|i| i as f32).collect();
    for (high_ratio, active) in [
        (1.0, vec![0, 1, 2, 3, 4]),
        (0.0, vec![5, 6, 7, 8, 9]),
        (0.4, vec![3, 4, 5, 6, 7]),
    ] {
        cfg.high_ratio = high_ratio;
        let mut p = Planner::new(&cfg, Schedule::new(&cfg, 28, 10).unwrap(), 1);
        let sel = p.select(5, &scores).unwrap();
        assert_eq!(sel.active[0], active, "high_ratio {high_ratio}");
        assert_eq!(sel.dropped.iter().filter(|&&d| d == 1).count(), 5);
    }
}

#[test]
fn starvation_scale_is_applied() {
    // Drop the two lowest scores. With k = ln 10 the tokens dropped once
    // score ten times higher on the next selection and are kept.
    let mut cfg = RasConfig::sd3_example(28);
    cfg.high_ratio = 0.0;
    let scores = [1.0f32, 2.0, 3.0, 4.0];
    for (k, second) in [(0.0, vec![2, 3]), (10f64.ln(), vec![0, 1])] {
        cfg.starvation_scale = k;
        let mut p = Planner::new(&cfg, Schedule::new(&cfg, 28, 4).unwrap(), 1);
        assert_eq!(p.select(4, &scores).unwrap().active[0], [2, 3]);
        assert_eq!(p.select(5, &scores).unwrap().active[0], second, "k = {k}");
    }
}

#[test]
fn each_image_gets_its_own_selection() {
    let cfg = RasConfig {
        high_ratio: 1.0,
        ..RasConfig::sd3_example(28)
    };
    let mut p = Planner::new(&cfg, Schedule::new(&cfg, 28, 4).unwrap(), 2);
    let scores = [1.0f32, 2.0, 3.0, 4.0, 4.0, 3.0, 2.0, 1.0];
    let sel = p.select(4, &scores).unwrap();
    assert_eq!(sel.active, [vec![0, 1], vec![2, 3]]);
    assert_eq!(sel.dropped, [0, 0, 1, 1, 1, 1, 0, 0]);
}

#[test]
fn bad_settings_are_clear_errors() {
    let base = RasConfig::sd3_example(28);
    let cases = [
        (
            RasConfig {
                sample_ratio: 0.0,
                ..base.clone()
            },
            "must be in (0, 1]",
        ),
        (
            RasConfig {
                sample_ratio: 1.5,
                ..base.clone()
            },
            "must be in (0, 1]",
        ),
        (
            RasConfig {
                scheduler_start_step: 0,
                ..base.clone()
            },
            "at least 1",
        ),
        (
            RasConfig {
                error_reset_steps: vec![12, 28],
                ..base.clone()
            },
            "reset step 28 is not below the step count 28",
        ),
        (
            RasConfig {
                high_ratio: -0.1,
                ..base.clone()
            },
            "--high-ratio",
        ),
    ];
    for (cfg, msg) in cases {
        let err = Schedule::new(&cfg, 28, 4096).unwrap_err().to_string();
        assert!(err.contains(msg), "{err}");
    }
}

#[test]
fn reset_steps_scale_with_step_count() {
    assert_eq!(RasConfig::sd3_example(56).error_reset_steps, [24, 40]);
    assert_eq!(RasConfig::sd3_example(10).error_reset_steps, [4, 7]);
    assert_eq!(RasConfig::sd3_example(14).error_reset_steps, [6, 10]);
}

#[test]
fn ratio_one_is_dense_everywhere() {
    let s = Schedule::new(&RasConfig::dense(28), 28, 4096).unwrap();
    assert!((0..28).all(|i| s.kind(i) == StepKind::Dense { refresh: false } && !s.selects_after(i)));
}

/// At other sizes the Lumina example's ramp scales with the token count,
/// so every step count stays a valid skip (256 tokens would make 512²
/// images skip a negative count).
#[test]
fn lumina_example_other_sizes() {
    for (steps, tokens) in [(30, 1024), (30, 256), (10, 256), (20, 576)] {
        let cfg = RasConfig::lumina_example(steps, tokens);
        let s = Schedule::new(&cfg, steps, tokens)
            .unwrap_or_else(|e| panic!("{steps} steps, {tokens} tokens: {e}"));
        let ras = (0..steps).filter(|&i| s.kind(i) == StepKind::Ras).count();
        assert!(ras > 0, "{steps} steps, {tokens} tokens: no RAS step");
    }
    assert_eq!(RasConfig::lumina_example(30, 1024).skip_num_step, 64);
    assert_eq!(RasConfig::lumina_example(10, 256).error_reset_steps, [4, 7]);
}

/// Below ratio ~0.19 the Lumina example's ramp would skip more tokens than
/// there are; the default shrinks it to the largest ramp that fits.
#[test]
fn lumina_ramp_is_fitted_at_low_ratios() {
    let mut cfg = RasConfig {
        sample_ratio: 0.125,
        ..RasConfig::lumina_example(30, 4096)
    };
    assert!(Schedule::new(&cfg, 30, 4096).is_err());
    cfg.fit_ramp(30, 4096);
    // The largest skip count of a schedule (None = invalid).
    let max_skip = |cfg: &RasConfig| {
        Schedule::new(cfg, 30, 4096)
            .ok()
            .map(|s| (0..30).map(|i| s.skip(i)).max().unwrap())
    };
    assert!(max_skip(&cfg).unwrap() < 4096, "every RAS step keeps a token");
    assert!(
        cfg.skip_num_step > 0 && cfg.skip_num_step < 256,
        "{}",
        cfg.skip_num_step
    );
    let mut bigger = RasConfig {
        skip_num_step: cfg.skip_num_step + 1,
        ..cfg.clone()
    };
    assert!(
        max_skip(&bigger).is_none_or(|m| m >= 4096),
        "not the largest ramp that fits"
    );
    bigger.fit_ramp(30, 4096);
    assert_eq!(bigger, cfg);
    let mut half = RasConfig::lumina_example(30, 4096);
    half.fit_ramp(30, 4096);
    assert_eq!(half.skip_num_step, 256, "a ramp that fits is kept");
}

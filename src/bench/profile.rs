//! Summaries of a kernel [`Profile`]: per step kind, the GPU time, the
//! launches and submits per step, and tables by kernel family and by layer
//! kind with each row's share of the step and achieved GFLOP/s and GB/s.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::gpu::{Profile, Record};

/// One row of a table: the launches that share a family or a layer kind.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub name: String,
    /// Per step.
    pub seconds: f64,
    pub flops: f64,
    pub bytes: f64,
    pub launches: f64,
}

impl Row {
    fn add(&mut self, r: &Record, per: f64) {
        self.seconds += r.seconds / per;
        self.flops += r.flops / per;
        self.bytes += r.bytes / per;
        self.launches += 1.0 / per;
    }
}

/// What one kind of step cost, averaged over its steps.
#[derive(Debug, Clone)]
pub struct StepSummary {
    /// "dense step", "RAS step", "forward", or "outside steps".
    pub kind: String,
    pub steps: u64,
    pub gpu_seconds: f64,
    pub dispatches: f64,
    pub submits: f64,
    /// Longest first.
    pub by_family: Vec<Row>,
    pub by_region: Vec<Row>,
}

fn rows(records: &[&Record], per: f64, key: impl Fn(&Record) -> &str) -> Vec<Row> {
    let mut map: BTreeMap<&str, Row> = BTreeMap::new();
    for r in records {
        let k = key(r);
        let row = map.entry(k).or_insert_with(|| Row {
            name: if k.is_empty() { "(other)".into() } else { k.into() },
            ..Row::default()
        });
        row.add(r, per);
    }
    let mut out: Vec<Row> = map.into_values().collect();
    out.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    out
}

/// Per step kind, in the order dense, RAS, others, outside steps.
pub fn summarize(profile: &Profile) -> Vec<StepSummary> {
    let mut kinds: Vec<&str> = profile.steps.keys().copied().collect();
    for r in &profile.records {
        if !kinds.contains(&r.step) {
            kinds.push(r.step);
        }
    }
    let rank = |k: &str| match k {
        "dense step" => 0,
        "RAS step" => 1,
        "" => 3,
        _ => 2,
    };
    kinds.sort_by_key(|k| (rank(k), *k));
    kinds
        .into_iter()
        .map(|kind| {
            let counts = profile.steps.get(kind).cloned().unwrap_or_default();
            let steps = counts.steps;
            let per = steps.max(1) as f64;
            let records: Vec<&Record> = profile.records.iter().filter(|r| r.step == kind).collect();
            StepSummary {
                kind: if kind.is_empty() {
                    "outside steps".into()
                } else {
                    kind.into()
                },
                steps,
                gpu_seconds: records.iter().map(|r| r.seconds).sum::<f64>() / per,
                dispatches: counts.dispatches as f64 / per,
                submits: counts.submits as f64 / per,
                by_family: rows(&records, per, |r| r.family),
                by_region: rows(&records, per, |r| r.region),
            }
        })
        .collect()
}

fn table(out: &mut String, title: &str, rows: &[Row], total: f64) {
    let _ = writeln!(
        out,
        "  {title:<22} {:>10} {:>7} {:>10} {:>9} {:>9}",
        "ms", "share", "GFLOP/s", "GB/s", "launches"
    );
    for r in rows {
        let gflops = match r.flops > 0.0 {
            true => format!("{:.1}", r.flops / r.seconds.max(1e-12) / 1e9),
            false => "-".into(),
        };
        let _ = writeln!(
            out,
            "  {:<22} {:>10.3} {:>6.1}% {:>10} {:>9.1} {:>9.1}",
            r.name,
            r.seconds * 1e3,
            100.0 * r.seconds / total.max(1e-12),
            gflops,
            r.bytes / r.seconds.max(1e-12) / 1e9,
            r.launches
        );
    }
}

/// The profile as text tables, one block per step kind.
pub fn render(profile: &Profile) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "profile ({})", profile.timer.describe());
    for s in summarize(profile) {
        if s.by_family.is_empty() {
            continue;
        }
        let _ = match s.steps {
            0 => writeln!(
                out,
                "{} (total): GPU {:.3} ms, {} dispatches, {} submits",
                s.kind,
                s.gpu_seconds * 1e3,
                s.dispatches,
                s.submits
            ),
            n => writeln!(
                out,
                "{} × {n}: GPU {:.3} ms/step, {:.1} dispatches/step, {:.1} submits/step",
                s.kind,
                s.gpu_seconds * 1e3,
                s.dispatches,
                s.submits
            ),
        };
        table(&mut out, "kernel family", &s.by_family, s.gpu_seconds);
        table(&mut out, "layer kind", &s.by_region, s.gpu_seconds);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{StepCount, Timer};
    use std::collections::HashMap;

    fn record(family: &'static str, region: &'static str, step: &'static str, ms: f64) -> Record {
        Record {
            family,
            entry: "main",
            region,
            step,
            seconds: ms * 1e-3,
            flops: 1e9,
            bytes: 1e6,
        }
    }

    #[test]
    fn summaries_average_over_steps_and_sort_by_time() {
        let steps = HashMap::from([
            (
                "dense step",
                StepCount {
                    steps: 2,
                    dispatches: 6,
                    submits: 2,
                },
            ),
            (
                "RAS step",
                StepCount {
                    steps: 1,
                    dispatches: 2,
                    submits: 3,
                },
            ),
        ]);
        let profile = Profile {
            timer: Timer::WallClock,
            records: vec![
                record("linear", "joint block", "dense step", 4.0),
                record("norm", "joint block", "dense step", 1.0),
                record("linear", "embed", "dense step", 2.0),
                record("linear", "joint block", "dense step", 4.0),
                record("attention", "joint block", "RAS step", 3.0),
                record("metric", "", "", 0.5),
            ],
            steps,
        };
        let s = summarize(&profile);
        let kinds: Vec<&str> = s.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["dense step", "RAS step", "outside steps"]);
        let dense = &s[0];
        assert!((dense.gpu_seconds - 5.5e-3).abs() < 1e-12);
        assert_eq!((dense.dispatches, dense.submits), (3.0, 1.0));
        assert_eq!(dense.by_family[0].name, "linear");
        assert!((dense.by_family[0].seconds - 5e-3).abs() < 1e-12);
        assert!((dense.by_family[0].launches - 1.5).abs() < 1e-12);
        assert_eq!(dense.by_region[0].name, "joint block");
        assert_eq!(s[2].by_region[0].name, "(other)");
        let text = render(&profile);
        assert!(text.contains("RAS step × 1: GPU 3.000 ms/step, 2.0 dispatches/step, 3.0 submits/step"));
    }
}

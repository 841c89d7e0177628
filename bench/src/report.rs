//! Medians, ratios and goals, printed as tables and kept for `--json`.

use serde_json::{json, Value};

/// The median of `v` (mean of the two middle values for an even count).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// How a measurement is read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Transactions per second (higher is better).
    Tps,
    /// Milliseconds per statement (lower is better).
    Millis,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::Tps => "tps",
            Unit::Millis => "ms",
        }
    }
}

/// The samples of one variant.
pub struct Series {
    pub variant: String,
    pub samples: Vec<f64>,
}

impl Series {
    pub fn new(variant: &str) -> Self {
        Series {
            variant: variant.to_string(),
            samples: Vec::new(),
        }
    }

    pub fn median(&self) -> f64 {
        median(&self.samples)
    }

    fn min(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }

    fn max(&self) -> f64 {
        self.samples
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// A throughput ratio between two variants, with an optional goal.
pub struct Ratio {
    pub numerator: String,
    pub denominator: String,
    pub goal_min: Option<f64>,
}

impl Ratio {
    pub fn new(numerator: &str, denominator: &str, goal_min: Option<f64>) -> Self {
        Ratio {
            numerator: numerator.to_string(),
            denominator: denominator.to_string(),
            goal_min,
        }
    }
}

/// One benchmark: variants measured side by side, and the ratios of their
/// medians.
pub struct Measurement {
    pub key: String,
    pub title: String,
    pub method: String,
    pub unit: Unit,
    /// For `Unit::Millis`: rows each statement handles, to print rows/s.
    pub rows_per_statement: Option<u64>,
    pub series: Vec<Series>,
    pub ratios: Vec<Ratio>,
}

pub struct RatioValue {
    pub label: String,
    /// Ratio of the medians (what the goals are checked against).
    pub value: f64,
    /// Median of the ratios of samples taken in the same round and
    /// repetition: less sensitive to background load that drifts over the
    /// run.
    pub paired: f64,
    pub goal_min: Option<f64>,
}

impl RatioValue {
    pub fn met(&self) -> Option<bool> {
        self.goal_min.map(|g| self.value >= g)
    }
}

impl Measurement {
    fn series(&self, variant: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.variant == variant)
    }

    /// Throughput of `a` relative to `b`, from the medians.
    fn throughput_ratio(&self, a: &str, b: &str) -> f64 {
        let (Some(a), Some(b)) = (self.series(a), self.series(b)) else {
            return f64::NAN;
        };
        match self.unit {
            Unit::Tps => a.median() / b.median(),
            Unit::Millis => b.median() / a.median(),
        }
    }

    /// Median of the throughput ratios of paired samples (the i-th sample
    /// of each variant comes from the same round and repetition).
    fn paired_ratio(&self, a: &str, b: &str) -> f64 {
        let (Some(a), Some(b)) = (self.series(a), self.series(b)) else {
            return f64::NAN;
        };
        let ratios: Vec<f64> = a
            .samples
            .iter()
            .zip(&b.samples)
            .map(|(x, y)| match self.unit {
                Unit::Tps => x / y,
                Unit::Millis => y / x,
            })
            .collect();
        median(&ratios)
    }

    pub fn ratio_values(&self) -> Vec<RatioValue> {
        self.ratios
            .iter()
            .map(|r| RatioValue {
                label: format!("{}/{}", r.numerator, r.denominator),
                value: self.throughput_ratio(&r.numerator, &r.denominator),
                paired: self.paired_ratio(&r.numerator, &r.denominator),
                goal_min: r.goal_min,
            })
            .collect()
    }

    pub fn print(&self) {
        println!();
        println!("{}", self.title);
        println!("  {}", self.method);
        let unit = self.unit.label();
        let extra = self.rows_per_statement.is_some();
        print!(
            "  {:<16} {:>12} {:>12} {:>12}",
            "variant",
            format!("median {unit}"),
            format!("min {unit}"),
            format!("max {unit}")
        );
        if extra {
            print!(" {:>14}", "median rows/s");
        }
        println!(" {:>8}", "samples");
        for s in &self.series {
            print!(
                "  {:<16} {:>12.1} {:>12.1} {:>12.1}",
                s.variant,
                s.median(),
                s.min(),
                s.max()
            );
            if let Some(rows) = self.rows_per_statement {
                print!(" {:>14.0}", rows as f64 / (s.median() / 1000.0));
            }
            println!(" {:>8}", s.samples.len());
        }
        for r in self.ratio_values() {
            let goal = match (r.goal_min, r.met()) {
                (Some(g), Some(true)) => format!("goal >= {g:.2}  met"),
                (Some(g), _) => format!("goal >= {g:.2}  NOT MET"),
                (None, _) => String::new(),
            };
            println!(
                "  throughput {:<22} {:>6.3}  (paired {:>5.3})   {goal}",
                r.label, r.value, r.paired
            );
        }
    }

    pub fn to_json(&self) -> Value {
        let variants: serde_json::Map<String, Value> = self
            .series
            .iter()
            .map(|s| {
                (
                    s.variant.clone(),
                    json!({
                        "median": s.median(),
                        "min": s.min(),
                        "max": s.max(),
                        "samples": s.samples,
                    }),
                )
            })
            .collect();
        let ratios: Vec<Value> = self
            .ratio_values()
            .iter()
            .map(|r| {
                json!({
                    "ratio": r.label,
                    "value": r.value,
                    "median_of_paired_ratios": r.paired,
                    "goal_min": r.goal_min,
                    "met": r.met(),
                })
            })
            .collect();
        json!({
            "title": self.title,
            "method": self.method,
            "unit": self.unit.label(),
            "rows_per_statement": self.rows_per_statement,
            "variants": variants,
            "throughput_ratios": ratios,
        })
    }
}

/// `base` rotated left by `by`: the order of variants in one round, so that
/// each variant takes each position in turn.
pub fn rotated<T: Clone>(base: &[T], by: usize) -> Vec<T> {
    if base.is_empty() {
        return Vec::new();
    }
    let k = by % base.len();
    base[k..].iter().chain(base[..k].iter()).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn rotation_covers_every_position() {
        assert_eq!(rotated(&[1, 2, 3], 0), vec![1, 2, 3]);
        assert_eq!(rotated(&[1, 2, 3], 1), vec![2, 3, 1]);
        assert_eq!(rotated(&[1, 2, 3], 5), vec![3, 1, 2]);
    }

    #[test]
    fn ratio_of_times_is_a_throughput_ratio() {
        let mut plain = Series::new("plain");
        plain.samples = vec![100.0, 200.0, 100.0];
        let mut guarded = Series::new("guarded");
        guarded.samples = vec![125.0, 250.0, 100.0];
        let m = Measurement {
            key: "k".into(),
            title: "t".into(),
            method: "m".into(),
            unit: Unit::Millis,
            rows_per_statement: Some(1),
            series: vec![plain, guarded],
            ratios: vec![Ratio::new("guarded", "plain", Some(0.8))],
        };
        let r = &m.ratio_values()[0];
        assert!((r.value - 0.8).abs() < 1e-9);
        assert!((r.paired - 0.8).abs() < 1e-9);
        assert_eq!(r.met(), Some(true));
    }
}

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
    /// Mebibytes of memory or of a file (lower is better).
    Mib,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::Tps => "tps",
            Unit::Millis => "ms",
            Unit::Mib => "MiB",
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

/// How a ratio between two variants is read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RatioKind {
    /// Throughput of the numerator relative to the denominator (higher is
    /// better for the numerator).
    Throughput,
    /// Time of the numerator relative to the denominator (lower is better
    /// for the numerator).
    Time,
}

impl RatioKind {
    fn label(self) -> &'static str {
        match self {
            RatioKind::Throughput => "throughput",
            RatioKind::Time => "time",
        }
    }
}

/// What a ratio should be.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    pub fn text(self) -> String {
        match self {
            Goal::AtLeast(g) => format!("goal >= {g:.2}"),
            Goal::AtMost(g) => format!("goal <= {g:.2}"),
        }
    }
}

/// A ratio between two variants, with an optional goal.
pub struct Ratio {
    pub numerator: String,
    pub denominator: String,
    pub kind: RatioKind,
    pub goal: Option<Goal>,
}

impl Ratio {
    /// Throughput ratio, goal: at least `goal_min`.
    pub fn new(numerator: &str, denominator: &str, goal_min: Option<f64>) -> Self {
        Ratio {
            numerator: numerator.to_string(),
            denominator: denominator.to_string(),
            kind: RatioKind::Throughput,
            goal: goal_min.map(Goal::AtLeast),
        }
    }

    /// Time ratio, goal: at most `goal_max`.
    pub fn time(numerator: &str, denominator: &str, goal_max: Option<f64>) -> Self {
        Ratio {
            numerator: numerator.to_string(),
            denominator: denominator.to_string(),
            kind: RatioKind::Time,
            goal: goal_max.map(Goal::AtMost),
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
    pub kind: RatioKind,
    /// Ratio of the medians (what the goals are checked against); NaN when
    /// a variant was not measured.
    pub value: f64,
    /// Median of the ratios of samples taken in the same round and
    /// repetition: less sensitive to background load that drifts over the
    /// run.
    pub paired: f64,
    pub goal: Option<Goal>,
}

impl RatioValue {
    /// Whether the goal is met; `None` without a goal or without a value.
    pub fn met(&self) -> Option<bool> {
        match self.goal {
            _ if self.value.is_nan() => None,
            None => None,
            Some(Goal::AtLeast(g)) => Some(self.value >= g),
            Some(Goal::AtMost(g)) => Some(self.value <= g),
        }
    }

    /// "goal <= 1.50  met", "goal >= 0.90  NOT MET", "goal ...  not measured", or "".
    pub fn verdict(&self) -> String {
        match (self.goal, self.met()) {
            (Some(g), Some(true)) => format!("{}  met", g.text()),
            (Some(g), Some(false)) => format!("{}  NOT MET", g.text()),
            (Some(g), None) => format!("{}  not measured", g.text()),
            (None, _) => String::new(),
        }
    }

    pub fn kind_label(&self) -> &'static str {
        self.kind.label()
    }
}

impl Measurement {
    fn series(&self, variant: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.variant == variant)
    }

    /// `a` relative to `b` from the medians: throughput of `a` over
    /// throughput of `b`, or time of `a` over time of `b`.
    fn ratio(&self, kind: RatioKind, a: &str, b: &str) -> f64 {
        let (Some(a), Some(b)) = (self.series(a), self.series(b)) else {
            return f64::NAN;
        };
        self.sample_ratio(kind, a.median(), b.median())
    }

    fn sample_ratio(&self, kind: RatioKind, a: f64, b: f64) -> f64 {
        // Tps and Millis are reciprocal: a throughput ratio of times is b / a.
        match (self.unit, kind) {
            (Unit::Tps, RatioKind::Throughput) | (Unit::Millis | Unit::Mib, RatioKind::Time) => {
                a / b
            }
            (Unit::Millis | Unit::Mib, RatioKind::Throughput) | (Unit::Tps, RatioKind::Time) => {
                b / a
            }
        }
    }

    /// Median of the ratios of paired samples (the i-th sample of each
    /// variant comes from the same round and repetition).
    fn paired_ratio(&self, kind: RatioKind, a: &str, b: &str) -> f64 {
        let (Some(a), Some(b)) = (self.series(a), self.series(b)) else {
            return f64::NAN;
        };
        let ratios: Vec<f64> = a
            .samples
            .iter()
            .zip(&b.samples)
            .map(|(x, y)| self.sample_ratio(kind, *x, *y))
            .collect();
        median(&ratios)
    }

    pub fn ratio_values(&self) -> Vec<RatioValue> {
        self.ratios
            .iter()
            .map(|r| RatioValue {
                label: format!("{}/{}", r.numerator, r.denominator),
                kind: r.kind,
                value: self.ratio(r.kind, &r.numerator, &r.denominator),
                paired: self.paired_ratio(r.kind, &r.numerator, &r.denominator),
                goal: r.goal,
            })
            .collect()
    }

    pub fn print(&self) {
        println!();
        println!("{}", self.title);
        println!("  {}", self.method);
        let unit = self.unit.label();
        let extra = self.rows_per_statement.is_some();
        let vw = self
            .series
            .iter()
            .map(|s| s.variant.len())
            .max()
            .unwrap_or(0)
            .max(16);
        let ratios = self.ratio_values();
        let rw = ratios
            .iter()
            .map(|r| r.label.len())
            .max()
            .unwrap_or(0)
            .max(22);
        print!(
            "  {:<vw$} {:>12} {:>12} {:>12}",
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
            if s.samples.is_empty() {
                println!("  {:<vw$} {:>12}", s.variant, "not measured");
                continue;
            }
            print!(
                "  {:<vw$} {:>12.1} {:>12.1} {:>12.1}",
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
        for r in ratios {
            if r.value.is_nan() {
                println!(
                    "  {:<10} {:<rw$}    n/a                  {}",
                    r.kind_label(),
                    r.label,
                    r.verdict()
                );
                continue;
            }
            println!(
                "  {:<10} {:<rw$} {:>6.3}  (paired {:>5.3})   {}",
                r.kind_label(),
                r.label,
                r.value,
                r.paired,
                r.verdict()
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
        let ratios = |kind: RatioKind| -> Vec<Value> {
            self.ratio_values()
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| {
                    let (goal_min, goal_max) = match r.goal {
                        Some(Goal::AtLeast(g)) => (Some(g), None),
                        Some(Goal::AtMost(g)) => (None, Some(g)),
                        None => (None, None),
                    };
                    json!({
                        "ratio": r.label,
                        "value": if r.value.is_nan() { Value::Null } else { json!(r.value) },
                        "median_of_paired_ratios": if r.paired.is_nan() { Value::Null } else { json!(r.paired) },
                        "goal_min": goal_min,
                        "goal_max": goal_max,
                        "met": r.met(),
                    })
                })
                .collect()
        };
        json!({
            "title": self.title,
            "method": self.method,
            "unit": self.unit.label(),
            "rows_per_statement": self.rows_per_statement,
            "variants": variants,
            "throughput_ratios": ratios(RatioKind::Throughput),
            "time_ratios": ratios(RatioKind::Time),
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

    #[test]
    fn time_ratio_with_an_upper_goal() {
        let mut hand = Series::new("hand");
        hand.samples = vec![100.0, 200.0, 100.0];
        let mut engine = Series::new("engine");
        engine.samples = vec![150.0, 260.0, 130.0];
        let m = Measurement {
            key: "k".into(),
            title: "t".into(),
            method: "m".into(),
            unit: Unit::Millis,
            rows_per_statement: None,
            series: vec![hand, engine],
            ratios: vec![
                Ratio::time("engine", "hand", Some(1.5)),
                Ratio::time("engine", "missing", Some(1.5)),
            ],
        };
        let values = m.ratio_values();
        assert!((values[0].value - 1.5).abs() < 1e-9);
        assert!((values[0].paired - 1.3).abs() < 1e-9);
        assert_eq!(values[0].met(), Some(true));
        assert!(values[1].value.is_nan());
        assert_eq!(values[1].met(), None);
        assert_eq!(values[1].verdict(), "goal <= 1.50  not measured");
    }
}

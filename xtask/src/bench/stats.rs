//! Median and range of repeated measurements: reports never show a mean of noisy runs.

use super::json::{obj, Value};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Summary {
    /// `None` for no samples; NaNs are ignored.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Summary {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// `median (min–max)` with `decimals`, or just the value for one sample.
    pub fn show(&self, decimals: usize) -> String {
        if self.n == 1 {
            format!("{:.decimals$}", self.median)
        } else {
            format!(
                "{:.decimals$} ({:.decimals$}–{:.decimals$})",
                self.median, self.min, self.max
            )
        }
    }

    pub fn to_json(self) -> Value {
        obj([
            ("median", self.median.into()),
            ("min", self.min.into()),
            ("max", self.max.into()),
            ("n", (self.n as u64).into()),
        ])
    }
}

/// JSON of an optional summary (`null` when nothing was measured).
pub fn json_of(summary: Option<Summary>) -> Value {
    summary.map_or(Value::Null, Summary::to_json)
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn median_and_range() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN, 1.0]).unwrap().n, 1);
        assert_eq!(s.show(1), "2.0 (1.0–3.0)");
        assert_eq!(Summary::of(&[0.5]).unwrap().show(2), "0.50");
    }
}

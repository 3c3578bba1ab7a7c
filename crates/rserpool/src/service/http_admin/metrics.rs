//! The Prometheus text exposition format (version 0.0.4), written by hand: families with
//! their `# HELP` and `# TYPE` lines, samples with escaped label values.

use std::fmt::Write;

use crate::histogram::HistogramSnapshot;

/// The content type of `/metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metrics page being written. Each family is written whole (HELP, TYPE, samples).
#[derive(Debug, Default)]
pub struct Prom {
    out: String,
}

/// The kind of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Prom {
    pub fn new() -> Self {
        Self::default()
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// One family without labels.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: f64) {
        self.family(name, help, kind, [(Vec::<(&str, &str)>::new(), value)]);
    }

    /// One family with a sample per label set (nothing written without samples, except
    /// the header: an empty family is still valid).
    pub fn family<'a, L, I>(&mut self, name: &str, help: &str, kind: Kind, samples: I)
    where
        L: AsRef<[(&'a str, &'a str)]>,
        I: IntoIterator<Item = (L, f64)>,
    {
        self.header(
            name,
            help,
            match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            },
        );
        for (labels, v) in samples {
            self.sample(name, labels.as_ref(), v);
        }
    }

    /// A histogram family (`_bucket`, `_sum`, `_count`).
    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.header(name, help, "histogram");
        let bucket = format!("{name}_bucket");
        for (le, n) in &h.cumulative {
            let le = if le.is_infinite() {
                "+Inf".to_owned()
            } else {
                number(*le)
            };
            self.sample(&bucket, &[("le", &le)], *n as f64);
        }
        self.sample(&format!("{name}_sum"), &[], h.sum_seconds);
        self.sample(&format!("{name}_count"), &[], h.count as f64);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_labels_are_written_in_the_text_format() {
        let mut p = Prom::new();
        p.single("x_total", "Things.", Kind::Counter, 3.0);
        p.family(
            "y",
            "Why.",
            Kind::Gauge,
            [(vec![("pool", "a\"b\\c\nd")], 1.5)],
        );
        let h = crate::histogram::Histogram::default();
        h.record(std::time::Duration::from_micros(7));
        p.histogram("lat_seconds", "Latency.", &h.snapshot());
        let t = p.finish();
        assert!(t.starts_with("# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n"));
        assert!(t.contains("y{pool=\"a\\\"b\\\\c\\nd\"} 1.5\n"), "{t}");
        assert!(t.contains("lat_seconds_bucket{le=\"0.000005\"} 0\n"), "{t}");
        assert!(t.contains("lat_seconds_bucket{le=\"0.00001\"} 1\n"), "{t}");
        assert!(t.contains("lat_seconds_bucket{le=\"+Inf\"} 1\n"), "{t}");
        assert!(t.contains("lat_seconds_count 1\n"), "{t}");
    }
}

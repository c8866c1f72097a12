//! Hand-written SVG charts for the overview: one or more series over the last hour's minutes,
//! with a y axis scaled to the data, rendered on the server (no JavaScript needed to read them).

use maud::{html, Markup};

/// One line of a chart.
pub struct Series<'a> {
    /// Shown in the legend.
    pub label: &'a str,
    /// CSS class giving the colour (`s1`…`s4`).
    pub class: &'a str,
    /// One value per minute, oldest first; `None` for a minute without data.
    pub values: Vec<Option<f64>>,
}

const W: f64 = 600.0;
const H: f64 = 180.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 8.0;

/// A line chart titled `title`, the y axis in `unit`. Minutes without data break the line.
pub fn line_chart(id: &str, title: &str, unit: &str, series: &[Series<'_>]) -> Markup {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0_f64, |m, v| m.max(*v));
    let top = nice_ceiling(max);
    let n = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let x = |i: usize| LEFT + (W - LEFT - 4.0) * i as f64 / (n.max(2) - 1) as f64;
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - v / top);
    let latest: Vec<String> = series
        .iter()
        .map(|s| {
            let last = s.values.last().copied().flatten();
            format!(
                "{}: {}",
                s.label,
                last.map_or_else(|| "–".to_owned(), |v| format!("{} {unit}", short(v)))
            )
        })
        .collect();
    let description = format!("{title}, last 60 minutes. Now: {}.", latest.join("; "));
    html! {
        figure.chart id=(id) {
            figcaption {
                strong { (title) }
                @for s in series {
                    " " span.(format!("key {}", s.class)) { (s.label) }
                }
            }
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(description) {
                @for frac in [0.0, 0.5, 1.0] {
                    line.grid x1=(LEFT) x2=(W - 4.0) y1=(y(top * frac)) y2=(y(top * frac)) {}
                    text.axis x=(LEFT - 4.0) y=(y(top * frac) + 4.0) text-anchor="end" { (short(top * frac)) }
                }
                text.axis x=(LEFT) y=(H - 4.0) { "−60 min" }
                text.axis x=(W - 4.0) y=(H - 4.0) text-anchor="end" { "now" }
                @for s in series {
                    @for run in runs(&s.values) {
                        @if run.len() == 1 {
                            circle.(s.class) cx=(x(run[0].0)) cy=(y(run[0].1)) r="2" {}
                        } @else {
                            polyline.(s.class) fill="none" points=(points(&run, &x, &y)) {}
                        }
                    }
                }
            }
            p.now { (latest.join(" · ")) }
        }
    }
}

/// Consecutive minutes with data, as (index, value) runs.
fn runs(values: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut out: Vec<Vec<(usize, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => current.push((i, *v)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn points(run: &[(usize, f64)], x: &dyn Fn(usize) -> f64, y: &dyn Fn(f64) -> f64) -> String {
    run.iter()
        .map(|(i, v)| format!("{:.1},{:.1}", x(*i), y(*v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v` (1 for an empty chart).
fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * mag)
}

/// A compact number: integers as such, others with up to 3 significant digits.
fn short(v: f64) -> String {
    if (v.fract() == 0.0 && v.abs() < 1e12) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_gaps() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(0.07), 0.1);
        assert_eq!(
            runs(&[None, Some(1.0), Some(2.0), None, Some(3.0)]),
            vec![vec![(1, 1.0), (2, 2.0)], vec![(4, 3.0)]]
        );
    }

    #[test]
    fn the_chart_draws_each_run_and_says_the_latest_value() {
        let svg = line_chart(
            "c",
            "Queue <depth>",
            "msgs",
            &[Series {
                label: "queued",
                class: "s1",
                values: vec![Some(0.0), Some(10.0), None, Some(4.0)],
            }],
        )
        .into_string();
        assert!(svg.contains("Queue &lt;depth&gt;"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
        // x from 48 to 596 over 4 points; y from 8 (10 msgs, the top) to 160 (0).
        assert!(svg.contains(r#"points="48.0,160.0 230.7,8.0""#), "{svg}");
        assert!(svg.contains("queued: 4 msgs"), "{svg}");
    }
}

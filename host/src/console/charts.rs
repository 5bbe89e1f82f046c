//! Line charts drawn as inline SVG by Rust code: no script, no image files, no library. A chart
//! shows the last hour of one or two series from the bounded sample ring (`samples.rs`); gaps
//! (no value in an interval) break the line instead of drawing zero.

use maud::{Markup, html};

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 20.0;
const COLOURS: [&str; 2] = ["#2563eb", "#dc2626"];

/// One line: a label and a value (or none) per time.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: Vec<(i64, Option<f64>)>,
}

/// A chart over `[from_ms, to_ms]`, its y axis from 0 to a round maximum.
pub fn line_chart(title: &str, unit: &str, series: &[Series], from_ms: i64, to_ms: i64) -> Markup {
    let max = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let latest: Vec<String> = series
        .iter()
        .map(|s| match s.points.iter().rev().find_map(|p| p.1) {
            Some(v) => format!("{}: {} {unit}", s.label, round(v)),
            None => format!("{}: no data", s.label),
        })
        .collect();
    let summary = format!("{title}, last hour. Latest {}", latest.join(", "));
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(summary) {
                title { (summary) }
                line x1=(LEFT) y1="4" x2=(LEFT) y2=(HEIGHT - BOTTOM) stroke="#999" {}
                line x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) stroke="#999" {}
                text x=(LEFT - 4.0) y="12" text-anchor="end" font-size="10" { (round(max)) }
                text x=(LEFT - 4.0) y=(HEIGHT - BOTTOM) text-anchor="end" font-size="10" { "0" }
                text x=(LEFT) y=(HEIGHT - 4.0) font-size="10" { "−60 min" }
                text x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" font-size="10" { "now" }
                @for (index, s) in series.iter().enumerate() {
                    @for segment in segments(&s.points, from_ms, to_ms, max) {
                        polyline points=(segment) fill="none" stroke-width="1.5"
                            stroke=(COLOURS[index % COLOURS.len()]) {}
                    }
                }
            }
            figcaption {
                strong { (title) } " (" (unit) ") — "
                @for (index, line) in latest.iter().enumerate() {
                    span class=(format!("series s{index}")) { (line) } " "
                }
            }
        }
    }
}

/// Pure: the SVG `points` of each unbroken run of values.
pub fn segments(points: &[(i64, Option<f64>)], from_ms: i64, to_ms: i64, max: f64) -> Vec<String> {
    let span = (to_ms - from_ms).max(1) as f64;
    let plot_height = HEIGHT - BOTTOM - 4.0;
    let mut runs = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for &(at, value) in points {
        match value {
            Some(v) if at >= from_ms => {
                let x = LEFT + (WIDTH - LEFT) * ((at - from_ms) as f64 / span).min(1.0);
                let y = (HEIGHT - BOTTOM) - plot_height * (v / max).clamp(0.0, 1.0);
                current.push(format!("{x:.1},{y:.1}"));
            }
            _ if !current.is_empty() => runs.push(std::mem::take(&mut current).join(" ")),
            _ => {}
        }
    }
    if !current.is_empty() {
        runs.push(current.join(" "));
    }
    runs
}

/// Pure: a round axis maximum at or above `value` (1, 2 or 5 times a power of ten).
pub fn nice_max(value: f64) -> f64 {
    if value.is_nan() || value <= 0.0 || value.is_infinite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

fn round(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(17.0), 20.0);
        assert_eq!(nice_max(100.0), 100.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
    }

    #[test]
    fn a_gap_breaks_the_line_and_values_are_scaled() {
        let points = [
            (0, Some(0.0)),
            (50, Some(10.0)),
            (60, None),
            (100, Some(5.0)),
        ];
        let runs = segments(&points, 0, 100, 10.0);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0], "48.0,140.0 324.0,4.0");
        assert_eq!(runs[1], "600.0,72.0");
    }

    #[test]
    fn the_chart_says_its_latest_values_in_text() {
        let series = [Series {
            label: "events/s",
            points: vec![(0, Some(2.0)), (10, Some(3.5))],
        }];
        let html = line_chart("Events <in>", "1/s", &series, 0, 10).into_string();
        assert!(html.contains("events/s: 3.5 1/s"), "{html}");
        assert!(html.contains("Events &lt;in&gt;"), "escaped: {html}");
    }
}

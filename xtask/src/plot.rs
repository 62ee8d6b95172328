//! The e2e plot: calls/s and p99 latency against the number of sessions, for
//! each transport, from `target/xtask-bench/e2e.json`.

use plotters::prelude::*;
use serde_json::Value;

use crate::Result;

/// `(sessions, calls/s, p99 µs)` per row of `throughput_<transport>`.
fn series(figures: &Value, transport: &str) -> Vec<(f64, f64, f64)> {
    figures[format!("throughput_{transport}")]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| {
                    Some((
                        row["sessions"].as_f64()?,
                        row["calls_per_s"].as_f64()?,
                        row["p99_us"].as_f64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Renders the SVG.
pub(crate) fn throughput(figures: &Value) -> Result<String> {
    let transports = [("stdio", BLUE), ("http", RED)];
    let data: Vec<_> = transports
        .iter()
        .map(|(name, color)| (*name, *color, series(figures, name)))
        .collect();
    if data.iter().all(|(_, _, rows)| rows.is_empty()) {
        return Err("e2e.json has no throughput rows to plot".to_owned());
    }
    let max_sessions = data
        .iter()
        .flat_map(|(_, _, rows)| rows.iter().map(|r| r.0))
        .fold(1.0, f64::max);
    let max_calls = data
        .iter()
        .flat_map(|(_, _, rows)| rows.iter().map(|r| r.1))
        .fold(1.0, f64::max);
    let max_p99 = data
        .iter()
        .flat_map(|(_, _, rows)| rows.iter().map(|r| r.2 / 1e3))
        .fold(0.1, f64::max);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 420)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| format!("plot: {e}");
        root.fill(&WHITE).map_err(err)?;
        let (left, right) = root.split_horizontally(480);
        let panels = [
            (left, "calls/s (all sessions)", max_calls * 1.1, false),
            (right, "p99 latency (ms)", max_p99 * 1.1, true),
        ];
        for (area, title, top, latency) in panels {
            let mut chart = ChartBuilder::on(&area)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(60)
                .build_cartesian_2d((1.0..max_sessions * 1.2).log_scale(), 0.0..top)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("sessions (one caller each)")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .draw()
                .map_err(err)?;
            for (name, color, rows) in &data {
                let points = rows
                    .iter()
                    .map(|&(s, calls, p99)| (s, if latency { p99 / 1e3 } else { calls }));
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(err)?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(points.map(|p| Circle::new(p, 3, color.filled())))
                    .map_err(err)?;
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_both_transports_and_refuses_empty_figures() {
        let figures = serde_json::json!({
            "throughput_stdio": [
                {"sessions": 1, "calls_per_s": 1000.0, "p99_us": 900.0},
                {"sessions": 8, "calls_per_s": 5000.0, "p99_us": 2500.0}
            ],
            "throughput_http": [
                {"sessions": 1, "calls_per_s": 800.0, "p99_us": 1500.0}
            ]
        });
        let svg = throughput(&figures).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("stdio") && svg.contains("http"));
        assert!(throughput(&serde_json::json!({})).is_err());
    }
}

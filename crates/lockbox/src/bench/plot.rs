//! `latency.png`: for each measured case that has a peer, lockbox's latency at every
//! percentile beside the peer's (log scale), drawn with plotters. Text needs a TrueType font:
//! DejaVu Sans from the system (Debian's fonts-dejavu-core), registered with plotters'
//! ab_glyph renderer; without one the picture is skipped and the run says so.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

use super::report::{Figure, Row};

const FONTS: [&str; 3] = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"];

fn register_font() -> Result<()> {
    let bytes = FONTS.iter().find_map(|p| std::fs::read(p).ok()).context("no DejaVuSans.ttf (install fonts-dejavu-core)")?;
    // plotters keeps fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| anyhow!("unreadable font"))
}

pub fn latency_png(rows: &[Row], path: &Path) -> Result<()> {
    register_font()?;
    let cases: Vec<(&Row, &super::load::Measure, &super::load::Measure)> = rows
        .iter()
        .filter_map(|r| match (&r.lockbox, r.peer.as_ref().map(|p| &p.figure)) {
            (Figure::Latency(a), Some(Figure::Latency(b))) => Some((r, a, b)),
            _ => None,
        })
        .collect();
    if cases.is_empty() {
        return Ok(());
    }
    let cols = 3;
    let nrows = cases.len().div_ceil(cols);
    let root = BitMapBackend::new(path, (1500, 420 * nrows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    for (area, (row, ours, theirs)) in root.split_evenly((nrows, cols)).iter().zip(cases) {
        let peer = row.peer.as_ref().map(|p| p.name.as_str()).unwrap_or_default();
        let top = ours.quantiles.iter().chain(&theirs.quantiles).map(|q| q.1).fold(0.01f64, f64::max) * 1.5;
        let bottom = ours.quantiles.iter().chain(&theirs.quantiles).map(|q| q.1).fold(f64::MAX, f64::min).max(0.001) / 1.5;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{}: {}", row.suite, row.case), ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..100.0f64, (bottom..top).log_scale())
            .map_err(|e| anyhow!("{e}"))?;
        chart.configure_mesh().x_desc("percentile").y_desc("latency (ms)").draw().map_err(|e| anyhow!("{e}"))?;
        for (name, m, color) in [("lockbox", ours, BLUE), (peer, theirs, RED)] {
            chart
                .draw_series(LineSeries::new(m.quantiles.iter().map(|(q, v)| (q * 100.0, *v)), color.stroke_width(2)))
                .map_err(|e| anyhow!("{e}"))?
                .label(name.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

//! Line plots: series over a shared x axis, gaps where values are not finite.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::common::*;
use super::spec::{Lines, Series};

pub(super) fn clean(points: &[(f64, f64)]) -> Segments {
    // Non-finite points break a line into segments rather than being joined over.
    let mut segments = vec![Vec::new()];
    for &(x, y) in points.iter().take(MAX_POINTS) {
        if x.is_finite() && y.is_finite() {
            if let Some(s) = segments.last_mut() {
                s.push((x, y));
            }
        } else if segments.last().is_some_and(|s| !s.is_empty()) {
            segments.push(Vec::new());
        }
    }
    segments.retain(|s| !s.is_empty());
    segments
}

pub(super) fn draw_lines<DB: DrawingBackend>(
    p: &Lines,
    root: &DrawingArea<DB, Shift>,
) -> Result<()> {
    let series: Vec<(&Series, Segments)> = p
        .series
        .iter()
        .take(MAX_SERIES)
        .map(|s| (s, clean(&s.points)))
        .collect();
    let all = || series.iter().flat_map(|(_, segs)| segs.iter().flatten());
    let xs = finite_bounds(all().map(|p| p.0)).and_then(|(a, b)| padded(a, b));
    let ys = match p.y_range {
        Some((a, b)) if a.is_finite() && b.is_finite() && b > a => Some((a, b)),
        _ => finite_bounds(all().map(|p| p.1)).and_then(|(a, b)| padded(a, b)),
    };
    let (Some((x0, x1)), Some((y0, y1))) = (xs, ys) else {
        return no_data(root, &p.title, "no finite points");
    };
    let entries: Vec<(String, Mark)> = series
        .iter()
        .enumerate()
        .map(|(k, (s, _))| {
            (
                s.label.clone(),
                Mark::Line(PALETTE[s.colour.unwrap_or(k) % PALETTE.len()], s.dashed),
            )
        })
        .collect();
    let root = &with_legend(root, &entries)?;
    let mut chart = ChartBuilder::on(root)
        .caption(&p.title, text_style(16))
        .margin(10)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .x_desc(&p.x_label)
        .y_desc(&p.y_label)
        .label_style(text_style(12))
        .axis_desc_style(text_style(13))
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .draw()
        .map_err(err)?;
    for (k, (s, segments)) in series.iter().enumerate() {
        let colour = PALETTE[s.colour.unwrap_or(k) % PALETTE.len()];
        let style = if s.dashed {
            colour.mix(0.8).stroke_width(1)
        } else {
            colour.stroke_width(2)
        };
        for seg in segments {
            if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(seg.clone(), 6, 4, style))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(seg.clone(), style))
                    .map_err(err)?;
            }
            chart
                .draw_series(seg.iter().map(|&pt| Circle::new(pt, 2, colour.filled())))
                .map_err(err)?;
        }
    }
    Ok(())
}

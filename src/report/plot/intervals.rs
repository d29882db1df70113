//! Interval plots: each observed value beside its null's band and centre, with the
//! calibration's pairs as dots.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::common::*;
use super::spec::{IntervalRow, Intervals};

pub(super) fn draw_intervals<DB: DrawingBackend>(
    p: &Intervals,
    root: &DrawingArea<DB, Shift>,
) -> Result<()> {
    let rows = &p.rows[..p.rows.len().min(MAX_ROWS)];
    let values = rows.iter().flat_map(|r| {
        let (a, b) = r.band.unwrap_or((f64::NAN, f64::NAN));
        [
            a,
            b,
            r.center.unwrap_or(f64::NAN),
            r.observed.unwrap_or(f64::NAN),
        ]
        .into_iter()
        .chain(r.reference.iter().copied())
        .chain(r.contrast.iter().copied())
    });
    let Some((x0, x1)) = finite_bounds(values).and_then(|(a, b)| padded(a, b)) else {
        return no_data(root, &p.title, "no finite values");
    };
    let mut entries = Vec::new();
    if rows.iter().any(|r| r.band.is_some()) {
        entries.push((p.band_label.clone(), Mark::Bar(BAND)));
    }
    if rows.iter().any(|r| r.center.is_some()) {
        entries.push((p.center_label.clone(), Mark::Tick));
    }
    if rows.iter().any(|r| !r.reference.is_empty()) {
        entries.push((p.reference_label.clone(), Mark::Dot(REFERENCE_DOT)));
    }
    if rows.iter().any(|r| !r.contrast.is_empty()) {
        entries.push((p.contrast_label.clone(), Mark::Dot(PALETTE[2])));
    }
    entries.push((p.observed_label.clone(), Mark::Dot(PALETTE[1])));
    let root = &with_legend(root, &entries)?;
    let n = rows.len();
    let longest = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0);
    let label_area = (longest.min(40) as u32 * 7 + 16).max(40);
    let flip = |i: f64| n as f64 - 1.0 - i;
    let y_range = Ticked::new(-0.7, n as f64 - 0.3, ticks(n, n));
    let mut chart = ChartBuilder::on(root)
        .caption(&p.title, text_style(16))
        .margin(10)
        .x_label_area_size(44)
        .y_label_area_size(label_area)
        .build_cartesian_2d(x0..x1, y_range)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .x_desc(&p.x_label)
        .label_style(text_style(12))
        .axis_desc_style(text_style(13))
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| {
            usize::try_from(flip(*v).round() as i64)
                .ok()
                .and_then(|i| rows.get(i))
                .map(|r| r.label.chars().take(40).collect())
                .unwrap_or_default()
        })
        .draw()
        .map_err(err)?;
    let at = |i: usize| flip(i as f64);
    let bands: Vec<_> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let (a, b) = r.band?;
            (a.is_finite() && b.is_finite())
                .then(|| Rectangle::new([(a, at(i) - 0.2), (b, at(i) + 0.2)], BAND.filled()))
        })
        .collect();
    chart.draw_series(bands).map_err(err)?;
    let centres: Vec<_> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let c = r.center.filter(|c| c.is_finite())?;
            Some(PathElement::new(
                vec![(c, at(i) - 0.3), (c, at(i) + 0.3)],
                BLACK.stroke_width(2),
            ))
        })
        .collect();
    chart.draw_series(centres).map_err(err)?;
    let dots = |values: fn(&IntervalRow) -> &[f64], offset: f64, colour: RGBColor| {
        rows.iter()
            .enumerate()
            .flat_map(move |(i, r)| {
                values(r)
                    .iter()
                    .filter(|v| v.is_finite())
                    .map(move |&v| Circle::new((v, at(i) + offset), 2, colour.filled()))
            })
            .collect::<Vec<_>>()
    };
    chart
        .draw_series(dots(|r| &r.reference, 0.12, REFERENCE_DOT))
        .map_err(err)?;
    chart
        .draw_series(dots(|r| &r.contrast, -0.12, PALETTE[2]))
        .map_err(err)?;
    let observed: Vec<_> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let o = r.observed.filter(|o| o.is_finite())?;
            Some(Circle::new((o, at(i)), 5, PALETTE[1].filled()))
        })
        .collect();
    chart.draw_series(observed).map_err(err)?;
    Ok(())
}

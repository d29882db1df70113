//! Heatmaps: a matrix as coloured cells, with paths drawn over them and a colour bar.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::common::*;
use super::spec::Heatmap;

/// Colours of the paths drawn over a heatmap, in turn.
const PATH_COLOURS: [RGBColor; 3] = [WHITE, RGBColor(255, 64, 160), RGBColor(255, 140, 0)];

/// The legend entries of a heatmap's paths: markers for dashed paths, lines for the others.
fn path_legend(p: &Heatmap) -> Vec<(String, Mark)> {
    p.paths
        .iter()
        .take(MAX_SERIES)
        .enumerate()
        .map(|(k, s)| {
            let c = PATH_COLOURS[k % 3];
            // White markers need an outline to show on white paper: the legend uses grey.
            let shown = if c == WHITE {
                RGBColor(150, 150, 150)
            } else {
                c
            };
            (
                s.label.clone(),
                if s.dashed {
                    Mark::Dot(shown)
                } else {
                    Mark::Line(shown, false)
                },
            )
        })
        .collect()
}

pub(super) fn draw_heatmap<DB: DrawingBackend>(
    p: &Heatmap,
    root: &DrawingArea<DB, Shift>,
) -> Result<()> {
    let nr = p.values.len().min(MAX_SIDE);
    let nc = p
        .values
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .min(MAX_SIDE);
    let any_finite = p.values.iter().flatten().any(|v| v.is_finite());
    let (lo, hi) = p.range;
    if nr == 0 || nc == 0 || !any_finite {
        let why = if p.empty_note.is_empty() {
            "no finite values"
        } else {
            &p.empty_note
        };
        return no_data(root, &p.title, why);
    }
    if !(lo.is_finite() && hi.is_finite() && hi > lo) {
        return no_data(root, &p.title, "no colour range");
    }
    let root = with_legend(root, &path_legend(p))?;
    let (w, _) = root.dim_in_pixel();
    let (main, bar) = root.split_horizontally(w as i32 - 86);
    let label = |labels: &Vec<String>, i: i64| -> String {
        usize::try_from(i)
            .ok()
            .and_then(|i| labels.get(i))
            .cloned()
            .unwrap_or_default()
    };
    let longest = p
        .row_labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);
    let y_area = (longest.min(28) as u32 * 7 + 30).max(48);
    let x_range = Ticked::new(-0.5, nc as f64 - 0.5, ticks(nc, 16));
    let y_range = Ticked::new(-0.5, nr as f64 - 0.5, ticks(nr, 16));
    let mut chart = ChartBuilder::on(&main)
        .caption(&p.title, text_style(16))
        .margin(8)
        .x_label_area_size(44)
        .y_label_area_size(y_area)
        .build_cartesian_2d(x_range, y_range)
        .map_err(err)?;
    // Row r is drawn at y = nr − 1 − r so that row 0 is at the top, as a matrix reads.
    let flip = |y: f64| nr as f64 - 1.0 - y;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(&p.x_label)
        .y_desc(&p.y_label)
        .label_style(text_style(12))
        .axis_desc_style(text_style(13))
        .x_label_formatter(&|v| label(&p.col_labels, v.round() as i64))
        .y_label_formatter(&|v| label(&p.row_labels, flip(*v).round() as i64))
        .draw()
        .map_err(err)?;
    let cells = (0..nr).flat_map(|r| (0..nc).map(move |c| (r, c)));
    chart
        .draw_series(cells.map(|(r, c)| {
            let v = p.values[r].get(c).copied().unwrap_or(f64::NAN);
            let y = flip(r as f64);
            let colour = if v.is_finite() {
                ViridisRGB::get_color_normalized(v.clamp(lo, hi), lo, hi)
            } else {
                NAN_GREY
            };
            Rectangle::new(
                [(c as f64 - 0.5, y - 0.5), (c as f64 + 0.5, y + 0.5)],
                colour.filled(),
            )
        }))
        .map_err(err)?;
    for (k, path) in p.paths.iter().take(MAX_SERIES).enumerate() {
        let colour = PATH_COLOURS[k % 3];
        let points: Vec<(f64, f64)> = path
            .points
            .iter()
            .take(MAX_POINTS)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| (x, flip(y)))
            .collect();
        let style = colour.stroke_width(2);
        let offset = (k as i32 - 1) * 3; // markers side by side where paths agree
        if !path.dashed {
            chart
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(err)?;
        }
        chart
            .draw_series(points.iter().map(|&(x, y)| {
                EmptyElement::at((x, y))
                    + Circle::new((offset, 0), 3 + (k as i32 % 2), colour.filled())
            }))
            .map_err(err)?;
    }
    colour_bar(&bar, lo, hi)
}

pub(super) fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lo: f64,
    hi: f64,
) -> Result<()> {
    let steps = 64;
    let mut chart = ChartBuilder::on(area)
        .margin_top(40)
        .margin_bottom(52)
        .margin_right(8)
        .y_label_area_size(44)
        .build_cartesian_2d(0f64..1f64, lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(5)
        .label_style(text_style(11))
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()
        .map_err(err)?;
    let step = (hi - lo) / steps as f64;
    chart
        .draw_series((0..steps).map(|i| {
            let a = lo + step * i as f64;
            Rectangle::new(
                [(0.0, a), (1.0, a + step)],
                ViridisRGB::get_color_normalized(a + step / 2.0, lo, hi).filled(),
            )
        }))
        .map_err(err)?;
    Ok(())
}

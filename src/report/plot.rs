//! Plots from plain data, each drawn twice by the same code: as SVG (inlined in report.html)
//! and as PNG. Text is laid out with one embedded font registered from bytes, so the PNG does
//! not depend on the fonts of the machine, and the PNG encoder writes pixels only (no time,
//! no text chunks): the same data gives the same bytes.
//!
//! Every plot degrades to an explicit "no data" panel when it has nothing finite to show, and
//! sizes are capped, because results.json may come from a bundle a stranger made.

use std::sync::OnceLock;

use anyhow::{Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// The family name the embedded font is registered under. SVG text names it too, so a browser
/// draws SVG text with its own sans-serif face.
const FONT: &str = "sans-serif";
const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Caps on what one plot draws (a hostile results.json must not make rendering slow).
const MAX_SIDE: usize = 128;
const MAX_SERIES: usize = 12;
const MAX_POINTS: usize = 4096;
const MAX_ROWS: usize = 48;

/// Series colours, chosen to stay distinct in print and for common colour blindness.
pub const PALETTE: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
    RGBColor(227, 119, 194),
    RGBColor(40, 40, 40),
    RGBColor(90, 90, 200),
];
const NAN_GREY: RGBColor = RGBColor(200, 200, 200);
const BAND: RGBColor = RGBColor(190, 190, 190);
/// Individual values of a reference population in an interval plot.
const REFERENCE_DOT: RGBColor = RGBColor(90, 90, 90);

/// A matrix shown as coloured cells; row 0 is drawn at the top.
#[derive(Clone, Debug)]
pub struct Heatmap {
    /// Title above the plot.
    pub title: String,
    /// Label of the horizontal axis (the columns).
    pub x_label: String,
    /// Label of the vertical axis (the rows).
    pub y_label: String,
    /// One label per column, left to right.
    pub col_labels: Vec<String>,
    /// One label per row, top to bottom.
    pub row_labels: Vec<String>,
    /// `values[row][col]`; non-finite cells are drawn grey.
    pub values: Vec<Vec<f64>>,
    /// The values the colour scale spans (values outside are clamped).
    pub range: (f64, f64),
    /// Lines over the cells, in cell units: `(column, row)` of cell centres; a `dashed`
    /// path is drawn as markers only.
    pub paths: Vec<Series>,
    /// What the "no data" panel says when no cell is finite (a default when empty).
    pub empty_note: String,
}

/// A named list of points.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend entry.
    pub label: String,
    /// `(x, y)` points in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (a null or a control beside the solid observed line).
    pub dashed: bool,
    /// A palette index, so related series (a value and its null) share a colour; `None`:
    /// the series' position.
    pub colour: Option<usize>,
}

/// Curves over a shared x axis.
#[derive(Clone, Debug)]
pub struct Lines {
    /// Title above the plot.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// The lines drawn (at most `MAX_SERIES` are shown).
    pub series: Vec<Series>,
    /// A fixed y range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
}

/// One row of an interval plot: a null band, the null's centre and the observed value.
#[derive(Clone, Debug)]
pub struct IntervalRow {
    /// Row label on the left.
    pub label: String,
    /// The null's interval, drawn as a grey bar.
    pub band: Option<(f64, f64)>,
    /// The null's centre, drawn as a tick.
    pub center: Option<f64>,
    /// The observed value, drawn as a dot.
    pub observed: Option<f64>,
    /// Individual values of a reference population (small grey dots just above the row) and
    /// of a contrasting one (small coloured dots just below), for a distribution and not only
    /// its summary.
    pub reference: Vec<f64>,
    /// Values of the contrasting population (see `reference`).
    pub contrast: Vec<f64>,
}

impl IntervalRow {
    /// A value beside a null given by its mean and standard deviation: the band is mean ± 2 sd.
    pub fn beside_two_sd(label: String, mean: f64, sd: f64, observed: f64) -> IntervalRow {
        IntervalRow::beside(
            label,
            Some((mean - 2.0 * sd, mean + 2.0 * sd)),
            Some(mean),
            observed,
        )
    }

    /// A value beside a null band and centre, with no population dots.
    pub fn beside(
        label: String,
        band: Option<(f64, f64)>,
        center: Option<f64>,
        observed: f64,
    ) -> IntervalRow {
        IntervalRow {
            label,
            band,
            center,
            observed: Some(observed),
            reference: Vec::new(),
            contrast: Vec::new(),
        }
    }
}

/// Observed values beside their nulls, one row each.
#[derive(Clone, Debug)]
pub struct Intervals {
    /// Title above the plot.
    pub title: String,
    /// Label of the value axis.
    pub x_label: String,
    /// Legend entry of the bands.
    pub band_label: String,
    /// Legend entry of the centre ticks.
    pub center_label: String,
    /// Legend entry of the observed dots.
    pub observed_label: String,
    /// Legend entries of the rows' `reference` and `contrast` dots (shown when any row has them).
    pub reference_label: String,
    /// Legend entry of the `contrast` dots.
    pub contrast_label: String,
    /// One row per value, top to bottom (at most `MAX_ROWS` are shown).
    pub rows: Vec<IntervalRow>,
}

impl Intervals {
    /// An interval plot without population dots: its title, value axis, legend entries of
    /// the bands, centres and observed values, and its rows.
    pub fn new(titles: [&str; 5], rows: Vec<IntervalRow>) -> Intervals {
        let [title, x_label, band_label, center_label, observed_label] = titles.map(String::from);
        Intervals {
            title,
            x_label,
            band_label,
            center_label,
            observed_label,
            reference_label: String::new(),
            contrast_label: String::new(),
            rows,
        }
    }
}

/// One plot of a report.
#[derive(Clone, Debug)]
pub enum Plot {
    /// A matrix as coloured cells.
    Heatmap(Heatmap),
    /// Curves over a shared x axis.
    Lines(Lines),
    /// Observed values beside their nulls.
    Intervals(Intervals),
}

/// A plot as SVG text and PNG bytes.
pub struct Rendered {
    /// The SVG document.
    pub svg: String,
    /// The same plot rasterised as PNG.
    pub png: Vec<u8>,
}

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if !ok {
        bail!("the embedded plot font could not be loaded");
    }
    Ok(())
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e:?}")
}

impl Plot {
    fn size(&self) -> (u32, u32) {
        match self {
            Plot::Heatmap(_) => (620, 540),
            Plot::Lines(p) => (720, 420 + 18 * (p.series.len().min(MAX_SERIES) as u32 / 3)),
            Plot::Intervals(p) => (720, 130 + 26 * p.rows.len().clamp(1, MAX_ROWS) as u32),
        }
    }

    /// Draws the plot as SVG and PNG; the same plot gives the same bytes.
    pub fn render(&self) -> Result<Rendered> {
        register_font()?;
        let (w, h) = self.size();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(err)?;
        }
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(err)?;
        }
        Ok(Rendered {
            svg,
            png: encode_png(&rgb, w, h)?,
        })
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(err)?;
        match self {
            Plot::Heatmap(p) => draw_heatmap(p, root),
            Plot::Lines(p) => draw_lines(p, root),
            Plot::Intervals(p) => draw_intervals(p, root),
        }
    }
}

/// RGB pixels to PNG: only the IHDR, IDAT and IEND chunks, so no timestamp or text.
pub fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Best);
        let mut writer = enc.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(out)
}

fn text_style(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// An explicit panel saying there is nothing to plot, with the plot's title.
fn no_data<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    why: &str,
) -> Result<()> {
    let (w, h) = root.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    root.draw(&Rectangle::new(
        [(4, 4), (w - 4, h - 4)],
        NAN_GREY.stroke_width(2),
    ))
    .map_err(err)?;
    let centre = |s: u32| {
        text_style(s).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ))
    };
    root.draw(&Text::new(
        title.to_string(),
        (w / 2, h / 2 - 16),
        centre(17),
    ))
    .map_err(err)?;
    root.draw(&Text::new(
        format!("no data: {why}"),
        (w / 2, h / 2 + 14),
        centre(14),
    ))
    .map_err(err)?;
    Ok(())
}

/// A range padded so constant data still spans something.
fn padded(lo: f64, hi: f64) -> Option<(f64, f64)> {
    if !(lo.is_finite() && hi.is_finite()) || hi < lo || !(hi - lo).is_finite() {
        return None;
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.06
    } else {
        (lo.abs() * 0.1).max(0.5)
    };
    let (a, b) = (lo - pad, hi + pad);
    (a.is_finite() && b.is_finite()).then_some((a, b))
}

fn finite_bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// An f64 axis whose ticks sit at given values (plotters' `with_key_points` over f64 has no
/// label formatter): cell centres for heatmaps, rows for interval plots.
struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(lo: f64, hi: f64, ticks: Vec<f64>) -> Ticked {
        Ticked {
            inner: (lo..hi).into(),
            ticks,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, _: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Mark {
    Line(RGBColor, bool),
    Dot(RGBColor),
    Bar(RGBColor),
    Tick,
}

const LEGEND_ROW: i32 = 18;

/// Legend entries laid out left to right, wrapping, in a strip under the plot (so the legend
/// never hides data). Returns the strip height needed for `width`.
fn legend_height(entries: &[(String, Mark)], width: u32) -> u32 {
    if entries.is_empty() {
        return 0;
    }
    let rows = legend_layout(entries, width as i32)
        .last()
        .map_or(1, |p| p.1 + 1);
    rows as u32 * LEGEND_ROW as u32 + 8
}

/// (x, row) of each entry.
fn legend_layout(entries: &[(String, Mark)], width: i32) -> Vec<(i32, i32)> {
    let (mut x, mut row) = (12, 0);
    entries
        .iter()
        .map(|(label, _)| {
            let w = 30 + 7 * label.chars().count().min(60) as i32;
            if x + w > width - 8 && x > 12 {
                x = 12;
                row += 1;
            }
            let at = (x, row);
            x += w + 10;
            at
        })
        .collect()
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, Mark)],
) -> Result<()> {
    let (w, _) = area.dim_in_pixel();
    for ((label, mark), (x, row)) in entries.iter().zip(legend_layout(entries, w as i32)) {
        let y = row * LEGEND_ROW + LEGEND_ROW / 2 + 2;
        match *mark {
            Mark::Line(c, dashed) => {
                let style = c.stroke_width(2);
                if dashed {
                    for k in 0..3 {
                        area.draw(&PathElement::new(
                            vec![(x + k * 8, y), (x + k * 8 + 5, y)],
                            style,
                        ))
                        .map_err(err)?;
                    }
                } else {
                    area.draw(&PathElement::new(vec![(x, y), (x + 20, y)], style))
                        .map_err(err)?;
                }
            }
            Mark::Dot(c) => area
                .draw(&Circle::new((x + 10, y), 5, c.filled()))
                .map_err(err)?,
            Mark::Bar(c) => area
                .draw(&Rectangle::new([(x, y - 5), (x + 20, y + 5)], c.filled()))
                .map_err(err)?,
            Mark::Tick => area
                .draw(&PathElement::new(
                    vec![(x + 10, y - 7), (x + 10, y + 7)],
                    BLACK.stroke_width(2),
                ))
                .map_err(err)?,
        }
        let style = text_style(12).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Left,
            plotters::style::text_anchor::VPos::Center,
        ));
        let text: String = label.chars().take(60).collect();
        area.draw(&Text::new(text, (x + 26, y), style))
            .map_err(err)?;
    }
    Ok(())
}

/// Splits off a legend strip at the bottom and draws the legend in it.
fn with_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    entries: &[(String, Mark)],
) -> Result<DrawingArea<DB, Shift>> {
    let (w, h) = root.dim_in_pixel();
    let lh = legend_height(entries, w).min(h / 2);
    if lh == 0 {
        return Ok(root.clone());
    }
    let (main, strip) = root.split_vertically(h as i32 - lh as i32);
    draw_legend(&strip, entries)?;
    Ok(main)
}

/// Integer tick positions `0..n`, thinned to at most about `max` labels.
fn ticks(n: usize, max: usize) -> Vec<f64> {
    let step = n.div_ceil(max.max(1)).max(1);
    (0..n).step_by(step).map(|i| i as f64).collect()
}

fn draw_heatmap<DB: DrawingBackend>(p: &Heatmap, root: &DrawingArea<DB, Shift>) -> Result<()> {
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
    let path_colours = [WHITE, RGBColor(255, 64, 160), RGBColor(255, 140, 0)];
    let entries: Vec<(String, Mark)> = p
        .paths
        .iter()
        .take(MAX_SERIES)
        .enumerate()
        .map(|(k, s)| {
            let c = path_colours[k % 3];
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
        .collect();
    let root = with_legend(root, &entries)?;
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
        let colour = path_colours[k % 3];
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

fn colour_bar<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, lo: f64, hi: f64) -> Result<()> {
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

/// Runs of finite points of one series.
type Segments = Vec<Vec<(f64, f64)>>;

fn clean(points: &[(f64, f64)]) -> Segments {
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

fn draw_lines<DB: DrawingBackend>(p: &Lines, root: &DrawingArea<DB, Shift>) -> Result<()> {
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

/// Tick labels short enough for an axis.
fn short(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn draw_intervals<DB: DrawingBackend>(p: &Intervals, root: &DrawingArea<DB, Shift>) -> Result<()> {
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

#[cfg(test)]
mod tests;

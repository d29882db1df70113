//! The plots a report draws, as plain data: heatmaps, lines and intervals.

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

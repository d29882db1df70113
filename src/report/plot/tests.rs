//! Tests of the plots: cells, labels, determinism, and inputs that must draw a panel.
use super::common::NAN_GREY;
use super::*;

fn heatmap(values: Vec<Vec<f64>>) -> Plot {
    Plot::Heatmap(Heatmap {
        title: "t".into(),
        x_label: "B layer".into(),
        y_label: "A layer".into(),
        col_labels: vec!["c0".into(), "c1".into()],
        row_labels: vec!["r0".into(), "r1".into()],
        values,
        range: (-1.0, 1.0),
        paths: Vec::new(),
        empty_note: String::new(),
    })
}

/// The chunk types of a PNG, in order.
fn chunks(png: &[u8]) -> Vec<String> {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let mut out = Vec::new();
    let mut i = 8;
    while i + 8 <= png.len() {
        let len = u32::from_be_bytes(png[i..i + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&png[i + 4..i + 8]).into_owned());
        i += 12 + len;
    }
    out
}

#[test]
fn a_two_by_two_heatmap_has_its_four_cells_and_labels() {
    let r = heatmap(vec![vec![-1.0, 1.0], vec![0.0, f64::NAN]])
        .render()
        .unwrap();
    // Viridis ends: −1 is dark purple, 1 is yellow; NaN is grey.
    let low = ViridisRGB::get_color_normalized(-1.0, -1.0, 1.0);
    let high = ViridisRGB::get_color_normalized(1.0, -1.0, 1.0);
    let hex = |c: RGBColor| format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
    for c in [low, high, NAN_GREY] {
        assert!(
            r.svg.contains(&hex(c)),
            "no cell of {} in {}",
            hex(c),
            r.svg
        );
    }
    for label in ["c0", "c1", "r0", "r1", "B layer", "A layer"] {
        assert!(
            r.svg.contains(&format!(">\n{label}\n<")),
            "no label {label}"
        );
    }
    assert_eq!(chunks(&r.png), ["IHDR", "IDAT", "IEND"]);
}

#[test]
fn the_same_plot_gives_the_same_bytes() {
    let p = heatmap(vec![vec![0.5, 0.25], vec![-0.5, 0.0]]);
    let (a, b) = (p.render().unwrap(), p.render().unwrap());
    assert_eq!(a.svg, b.svg);
    assert_eq!(a.png, b.png);
}

fn intervals_plot(rows: Vec<IntervalRow>, reference: &str, contrast: &str) -> Plot {
    Plot::Intervals(Intervals {
        reference_label: reference.into(),
        contrast_label: contrast.into(),
        title: "I".into(),
        x_label: "x".into(),
        band_label: "b".into(),
        center_label: "c".into(),
        observed_label: "o".into(),
        rows,
    })
}

#[test]
fn empty_nan_and_constant_inputs_draw_a_panel_not_a_panic() {
    let series = |pts: Vec<(f64, f64)>| Series {
        label: "s".into(),
        points: pts,
        dashed: false,
        colour: None,
    };
    let lines = |s: Vec<Series>| {
        Plot::Lines(Lines {
            title: "L".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: s,
            y_range: None,
        })
    };
    let intervals = |rows: Vec<IntervalRow>| intervals_plot(rows, "", "");
    let nan_row = IntervalRow {
        reference: Vec::new(),
        contrast: Vec::new(),
        label: "r".into(),
        band: Some((f64::NAN, f64::INFINITY)),
        center: None,
        observed: Some(f64::NAN),
    };
    for p in [
        heatmap(Vec::new()),
        heatmap(vec![vec![f64::NAN; 2]; 2]),
        heatmap(vec![Vec::new(), Vec::new()]),
        lines(Vec::new()),
        lines(vec![series(vec![(f64::NAN, 1.0), (2.0, f64::INFINITY)])]),
        intervals(Vec::new()),
        intervals(vec![nan_row]),
    ] {
        let r = p.render().unwrap();
        assert!(r.svg.contains("no data"), "{}", r.svg);
    }
    // Constant and single-point data still get an axis.
    for p in [
        lines(vec![series(vec![(1.0, 0.5), (2.0, 0.5)])]),
        lines(vec![series(vec![(3.0, 3.0)])]),
        heatmap(vec![vec![0.3; 2]; 2]),
    ] {
        let r = p.render().unwrap();
        assert!(!r.svg.contains("no data"), "{}", r.svg);
    }
}

#[test]
fn interval_rows_draw_every_reference_and_contrast_value_as_a_dot() {
    let rows = vec![IntervalRow {
        label: "rule".into(),
        band: Some((-1.0, 0.5)),
        center: Some(1.0),
        observed: Some(2.0),
        reference: vec![-0.5, 0.0, 0.25, f64::NAN],
        contrast: vec![1.5, 2.5],
    }];
    let plot = |rows| intervals_plot(rows, "an independent pair", "a derived pair");
    let with = plot(rows.clone()).render().unwrap().svg;
    let without = plot(vec![IntervalRow {
        reference: Vec::new(),
        contrast: Vec::new(),
        ..rows[0].clone()
    }])
    .render()
    .unwrap()
    .svg;
    // three finite reference dots, two contrast dots, and one legend dot for each kind
    assert_eq!(
        with.matches("<circle").count() - without.matches("<circle").count(),
        3 + 2 + 2,
        "{with}"
    );
    assert!(with.contains("an independent pair") && with.contains("a derived pair"));
    assert!(!without.contains("an independent pair"));
}

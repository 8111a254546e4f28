//! `canopy replay --report`: a replay drawn as one self-contained HTML page, run as the real
//! binary. The report of a short file with a known spike and a labelled window must parse
//! strictly, draw the window, the flagged steps and the threshold where the time and value axes
//! put them, and say the counts replay's summary says; Debian's headless Chromium must open it
//! from disk with no console error and no request, and draw something; a 100,000-row file must
//! give a report of a few megabytes at most; several files must give one page, worst first,
//! without changing their CSV outputs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use canopy::source::csv::format_timestamp;
use common::replay::{CONFIG, T0_MS, TempDir};

const THRESHOLD: f64 = 0.99;
const ROWS: usize = 500;
const SPIKE: usize = 300;
/// The labelled window around the spike, as rows (both ends included).
const WINDOW: (usize, usize) = (295, 310);
const STEP_MS: i64 = 300_000;

fn row_time(k: usize) -> i64 {
    T0_MS + STEP_MS * k as i64
}

/// A level around 10 with a slow wave and small deterministic noise; 25 at the spike.
fn csv(rows: usize, spike: usize) -> String {
    let mut s = String::from("timestamp,value\n");
    for k in 0..rows {
        let v = if k == spike {
            25.0
        } else {
            10.0 + 0.5 * (k as f64 * 0.3).sin() + ((k * 7) % 11) as f64 / 22.0
        };
        s.push_str(&format!("{},{v}\n", format_timestamp(row_time(k))));
    }
    s
}

/// One window from row `a` to row `b`, as NAB's windows.json lists it.
fn window((a, b): (usize, usize)) -> String {
    let nab = |k: usize| format!("{}.000000", format_timestamp(row_time(k)));
    format!(r#"[["{}", "{}"]]"#, nab(a), nab(b))
}

/// NAB's windows.json for `key`, with one window from row `a` to row `b`.
fn labels(key: &str, rows: (usize, usize)) -> String {
    format!(r#"{{"{key}": {}}}"#, window(rows))
}

fn canopy(args: &[&std::ffi::OsStr]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(args)
        .output()
        .expect("run canopy");
    assert!(
        out.status.success(),
        "canopy {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `canopy replay` of one labelled file, writing its CSV to `out` and its page to `report`.
fn replay_with_report(
    config: &Path,
    input: &Path,
    labels: &Path,
    out: &Path,
    report: &Path,
) -> Output {
    canopy(&[
        "replay".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "--labels".as_ref(),
        labels.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--report".as_ref(),
        report.as_os_str(),
    ])
}

/// The spiky file replayed with labels into `report.html` (and its CSV into `out.csv`).
struct Replayed {
    dir: TempDir,
    stderr: String,
    /// Timestamp and flag of each output row with a score.
    flagged: Vec<i64>,
    html: String,
}

fn replay_spiky(name: &str) -> Replayed {
    let dir = TempDir::new(name);
    let input = dir.write("data/spiky.csv", &csv(ROWS, SPIKE));
    let labels = dir.write("windows.json", &labels("data/spiky.csv", WINDOW));
    let config = dir.write("canopy.toml", CONFIG);
    let (report, out_csv) = (dir.path("report.html"), dir.path("out.csv"));
    let output = replay_with_report(&config, &input, &labels, &out_csv, &report);
    let text = std::fs::read_to_string(&out_csv).expect("output csv");
    let flagged = text
        .lines()
        .skip(1)
        .filter(|l| l.ends_with(",1"))
        .map(|l| {
            let t = l.split(',').next().unwrap_or_default();
            canopy::source::csv::parse_timestamp(t).expect("output timestamp")
        })
        .collect();
    Replayed {
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        flagged,
        html: std::fs::read_to_string(&report).expect("report written"),
        dir,
    }
}

/// The numbers of a line of replay's stderr that starts with `prefix`.
fn numbers_of(stderr: &str, prefix: &str) -> Vec<usize> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line `{prefix}…` in: {stderr}"));
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("number"))
        .collect()
}

/// The page as strict XML (its `<!DOCTYPE html>` allowed), so an unclosed element or a stray
/// entity fails here, not only in a browser.
fn parse(html: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(html, options).expect("the report is well-formed")
}

/// An attribute as a number.
fn num(node: roxmltree::Node, name: &str) -> f64 {
    node.attribute(name)
        .unwrap_or_else(|| panic!("<{}> has no {name}", node.tag_name().name()))
        .parse()
        .unwrap_or_else(|_| panic!("{name} of <{}> is not a number", node.tag_name().name()))
}

/// A panel's mapping from times and values to pixels, as its `data-*` attributes say.
struct Axes {
    t: (f64, f64),
    x: (f64, f64),
    v: (f64, f64),
    y: (f64, f64),
}

impl Axes {
    fn of(panel: roxmltree::Node) -> Axes {
        Axes {
            t: (num(panel, "data-t0"), num(panel, "data-t1")),
            x: (num(panel, "data-x0"), num(panel, "data-x1")),
            v: (num(panel, "data-v0"), num(panel, "data-v1")),
            y: (num(panel, "data-y0"), num(panel, "data-y1")),
        }
    }

    fn x(&self, t_ms: i64) -> f64 {
        self.x.0 + (t_ms as f64 - self.t.0) / (self.t.1 - self.t.0) * (self.x.1 - self.x.0)
    }

    fn y(&self, v: f64) -> f64 {
        self.y.0 + (v - self.v.0) / (self.v.1 - self.v.0) * (self.y.1 - self.y.0)
    }
}

/// The elements named `tag` inside the `<g class="{class}">` of `panel`.
fn drawn<'a>(
    panel: roxmltree::Node<'a, 'a>,
    class: &str,
    tag: &str,
) -> Vec<roxmltree::Node<'a, 'a>> {
    panel
        .children()
        .filter(|g| g.has_tag_name("g") && g.attribute("class") == Some(class))
        .flat_map(|g| g.descendants().filter(|n| n.has_tag_name(tag)))
        .collect()
}

/// No script, stylesheet, image or frame to fetch, and no URL a browser would request.
fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for needle in [
        "<script",
        "<link",
        "<img",
        "<iframe",
        "<object",
        "<embed",
        "@import",
        "url(",
        " src=",
        "href=\"http",
        "href='http",
        "href=\"//",
        "xlink:href",
    ] {
        assert!(!lower.contains(needle), "the report holds `{needle}`");
    }
    // The only URL is the SVG namespace, which names and fetches nothing.
    let urls = lower.matches("http://").count() + lower.matches("https://").count();
    let namespaces = lower
        .matches("xmlns=\"http://www.w3.org/2000/svg\"")
        .count();
    assert_eq!(urls, namespaces, "a URL other than the SVG namespace");
}

#[test]
fn a_report_draws_the_window_the_flagged_spike_and_the_threshold_and_counts_as_replay_does() {
    let r = replay_spiky("report-spike");
    assert_self_contained(&r.html);
    let doc = parse(&r.html);

    // The header's counts are replay's summary lines'.
    let counts: HashMap<&str, usize> = doc
        .descendants()
        .filter_map(|n| {
            let name = n.attribute("data-count")?;
            Some((name, n.text()?.parse().expect("a count")))
        })
        .collect();
    let replayed = numbers_of(&r.stderr, "replayed ");
    // "replayed R rows of …/spiky.csv: S model steps, C scored"
    let (rows, steps, scored) = (
        replayed[0],
        replayed[replayed.len() - 2],
        replayed[replayed.len() - 1],
    );
    assert_eq!(rows, ROWS);
    let summary = numbers_of(&r.stderr, "windows detected ");
    // "windows detected D/W, false positives F, flagged X of Y scored steps (probation: first P rows, counted from …"
    let expected = [
        ("rows", rows),
        ("steps", steps),
        ("scored", scored),
        ("flagged", r.flagged.len()),
        ("detected", summary[0]),
        ("windows", summary[1]),
        ("false-positives", summary[2]),
        ("flagged-after-probation", summary[3]),
        ("scored-after-probation", summary[4]),
        ("probation-rows", summary[5]),
    ];
    for (name, value) in expected {
        assert_eq!(
            counts.get(name),
            Some(&value),
            "header count `{name}`: {}",
            r.stderr
        );
    }
    assert_eq!(
        (summary[0], summary[1]),
        (1, 1),
        "the spike's window is detected"
    );

    let panels: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("svg") && n.attribute("class") == Some("panel"))
        .collect();
    // The column, two features, the score and the likelihood.
    assert_eq!(panels.len(), 5);
    let likelihood = *panels
        .iter()
        .find(|p| p.attribute("data-scale") == Some("likelihood"))
        .expect("a likelihood panel");
    let axes = Axes::of(likelihood);
    assert_eq!(axes.t, (row_time(0) as f64, row_time(ROWS - 1) as f64));

    // The window, shaded from its first to its last row, on every panel.
    for panel in &panels {
        let windows = drawn(*panel, "windows", "rect");
        assert_eq!(windows.len(), 1, "one window per panel");
        let (x, w) = (num(windows[0], "x"), num(windows[0], "width"));
        assert!(
            (x - axes.x(row_time(WINDOW.0))).abs() <= 1.5,
            "window starts at {x}"
        );
        assert!(
            (x + w - axes.x(row_time(WINDOW.1))).abs() <= 1.5,
            "window ends at {}",
            x + w
        );
    }

    // Each flagged step is a mark at its time, and the spike's step is one of them.
    let marks: Vec<f64> = drawn(likelihood, "flags", "circle")
        .iter()
        .map(|c| num(*c, "cx"))
        .collect();
    assert_eq!(marks.len(), r.flagged.len());
    for (mark, t) in marks.iter().zip(&r.flagged) {
        assert!((mark - axes.x(*t)).abs() <= 1.5, "mark at {mark} for {t}");
    }
    assert!(
        r.flagged
            .iter()
            .any(|&t| (row_time(WINDOW.0)..=row_time(WINDOW.1)).contains(&t)),
        "the spike is flagged: {:?}",
        r.flagged
    );

    // The threshold: one line across the plot at -log10(1 - 0.99) = 2.
    let lines = drawn(likelihood, "threshold", "polyline");
    assert_eq!(lines.len(), 1);
    let points: Vec<(f64, f64)> = lines[0]
        .attribute("points")
        .expect("points")
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').expect("x,y");
            (x.parse().expect("x"), y.parse().expect("y"))
        })
        .collect();
    let y = axes.y(-(1.0 - THRESHOLD).log10());
    assert!(
        points.iter().all(|(_, py)| (py - y).abs() <= 1.5),
        "{points:?} vs {y}"
    );
    assert!(
        (points[0].0 - axes.x.0).abs() <= 1.5
            && (points[points.len() - 1].0 - axes.x.1).abs() <= 1.5
    );
    drop(r.dir);
}

/// Debian's Chromium, or `None` when it is absent and CANOPY_REQUIRE_CHROMIUM is unset.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CANOPY_REQUIRE_CHROMIUM").is_none(),
            "CANOPY_REQUIRE_CHROMIUM is set but chromium is not on PATH (apt-get install chromium)"
        );
        eprintln!(
            "SKIPPED: chromium is not installed (apt-get install chromium); set CANOPY_REQUIRE_CHROMIUM=1 to make this a failure"
        );
    }
    found
}

/// What headless Chromium did with a page opened from disk: its console messages, the URLs the
/// page requested, and the screenshot's pixels (RGB rows).
struct Visit {
    console: Vec<String>,
    requests: Vec<String>,
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

/// Opens `page` in headless Chromium, offline (every host name fails to resolve), logging the
/// console to stderr and every request to a NetLog, and takes a screenshot.
fn visit(chromium: &Path, page: &Path, dir: &TempDir, name: &str) -> Visit {
    let (shot, netlog) = (
        dir.path(&format!("{name}.png")),
        dir.path(&format!("{name}.netlog.json")),
    );
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            "--net-log-capture-mode=Default",
            "--window-size=1400,1400",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path(&format!("{name}.profile")).display()
        ))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && shot.is_file(),
        "chromium failed: {stderr}"
    );
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();

    // Requests are the NetLog's URL_REQUEST_START_JOB events; the page's have an origin as
    // initiator (`null` for a file), the browser's own background ones have `not an origin`.
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&netlog).expect("netlog"))
            .expect("netlog is JSON");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("the NetLog names URL_REQUEST_START_JOB");
    let requests = log["events"]
        .as_array()
        .expect("NetLog events")
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter(|e| e["params"]["initiator"].as_str() != Some("not an origin"))
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_owned))
        .collect();

    let file = std::fs::File::open(&shot).expect("screenshot");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let channels = info.color_type.samples();
    assert!(
        channels >= 3,
        "a colour screenshot, got {:?}",
        info.color_type
    );
    let rgb = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    Visit {
        console,
        requests,
        width: info.width as usize,
        height: info.height as usize,
        rgb,
    }
}

#[test]
fn chromium_opens_the_report_offline_without_console_errors_or_requests_and_draws_it() {
    let Some(chromium) = chromium() else { return };
    let r = replay_spiky("report-chromium");
    let report = r.dir.path("report.html");

    // The checks must be able to fail: a page that logs an error and fetches an image trips both.
    let control = r.dir.write(
        "control.html",
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"/><title>control</title></head><body><p>control</p><script>console.error("canopy-control-error");</script><img src="http://canopy-control.invalid/x.png"/></body></html>"#,
    );
    let c = visit(&chromium, &control, &r.dir, "control");
    assert!(
        c.console.iter().any(|l| l.contains("canopy-control-error")),
        "the console check sees nothing: {:?}",
        c.console
    );
    assert!(
        c.requests
            .iter()
            .any(|u| u.contains("canopy-control.invalid")),
        "the request check sees nothing: {:?}",
        c.requests
    );

    let v = visit(&chromium, &report, &r.dir, "report");
    assert!(v.console.is_empty(), "console messages: {:?}", v.console);
    assert!(
        v.requests.is_empty(),
        "the report requested: {:?}",
        v.requests
    );
    // The page's background is white (the report's CSS); a drawn report covers a good part of
    // the screenshot with something else: text, axes, lines, shades.
    assert_eq!((v.width, v.height), (1400, 1400));
    let pixels = v.width * v.height;
    let background = v
        .rgb
        .chunks_exact(3)
        .filter(|p| *p == [255, 255, 255])
        .count();
    let drawn = pixels - background;
    assert!(
        drawn * 100 > pixels * 3,
        "only {drawn} of {pixels} pixels differ from the background"
    );
    // The window's shade (#E4572E at 20% on white: about (250, 221, 213)) is on screen.
    let shaded = v
        .rgb
        .chunks_exact(3)
        .filter(|p| p[0] >= 245 && (212..=230).contains(&p[1]) && (200..=222).contains(&p[2]))
        .count();
    assert!(shaded > 1000, "{shaded} pixels of the window's shade");
}

#[test]
fn a_100000_row_file_gives_a_report_of_a_few_megabytes() {
    // A light model, so the replay itself stays short in a test build; the report draws the
    // same panels as any file with one column, one feature and a detector.
    const LIGHT: &str = r#"
[limits]
retention = "1h"
[evaluation]
step = "5m"
lateness = "0s"
history = "1d"
[features]
level = 'value'
[models.det]
kind = "isolation_forest"
features = ["level"]
step = "5m"
max_samples = 64
n_estimators = 10
reservoir_size = 256
retrain_interval = "7d"
threshold = 0.999
"#;
    const BIG: usize = 100_000;
    let dir = TempDir::new("report-big");
    let input = dir.write("big.csv", &csv(BIG, BIG / 2));
    let labels = dir.write(
        "windows.json",
        &labels("big.csv", (BIG / 2 - 10, BIG / 2 + 10)),
    );
    let config = dir.write("canopy.toml", LIGHT);
    let report = dir.path("big.html");
    let output = replay_with_report(&config, &input, &labels, &dir.path("big.out.csv"), &report);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("replayed {BIG} rows")), "{stderr}");
    let html = std::fs::read_to_string(&report).expect("report");
    // README.md, "Reports": under 3 MB for any length of file.
    assert!(html.len() < 3_000_000, "{} bytes", html.len());
    parse(&html);
    // Downsampled: no line has more than a few points per pixel column.
    let most = html
        .split("points=\"")
        .skip(1)
        .map(|p| {
            p.split('"')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(most <= 5 * 1280, "a line of {most} points");
}

#[test]
fn several_files_give_one_page_worst_first_and_their_csvs_unchanged() {
    let dir = TempDir::new("report-several");
    // Two files: the calm one has its window where nothing happens (missed), the spiky one
    // finds its window. The calm one is the worse, so it comes first.
    dir.write("data/a_spiky.csv", &csv(ROWS, SPIKE));
    dir.write("data/b_calm.csv", &csv(ROWS, ROWS));
    let labels = dir.write(
        "windows.json",
        &format!(
            r#"{{"a_spiky.csv": {}, "b_calm.csv": {}}}"#,
            window(WINDOW),
            window((200, 210))
        ),
    );
    let config = dir.write("canopy.toml", CONFIG);
    let (report, outs) = (dir.path("report.html"), dir.path("outs"));
    let output = canopy(&[
        "replay".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--input".as_ref(),
        dir.path("data").as_os_str(),
        "--labels".as_ref(),
        labels.as_os_str(),
        "--out".as_ref(),
        outs.as_os_str(),
        "--report".as_ref(),
        report.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches("replayed 500 rows").count(), 2, "{stderr}");

    // Each CSV is what replaying that file alone writes.
    let single = dir.path("single.csv");
    canopy(&[
        "replay".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--input".as_ref(),
        dir.path("data/a_spiky.csv").as_os_str(),
        "--out".as_ref(),
        single.as_os_str(),
    ]);
    let read = |p: PathBuf| std::fs::read_to_string(p).expect("csv");
    assert_eq!(read(outs.join("a_spiky.csv")), read(single));
    assert!(outs.join("b_calm.csv").is_file());

    let html = std::fs::read_to_string(&report).expect("report");
    assert_self_contained(&html);
    let doc = parse(&html);
    let index: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("a"))
        .filter_map(|a| a.text())
        .collect();
    assert_eq!(index.len(), 2, "{index:?}");
    assert!(
        index[0].ends_with("b_calm.csv") && index[1].ends_with("a_spiky.csv"),
        "{index:?}"
    );
    let sections: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("h2"))
        .filter_map(|h| h.text())
        .collect();
    assert_eq!(sections, index, "sections in the index's order");
    assert!(
        html.contains("data-corpus=\"standard\""),
        "the corpus's NAB scores"
    );
}

#[test]
fn a_forecast_is_drawn_at_the_time_it_forecasts_and_a_horizon_past_the_model_is_refused() {
    let dir = TempDir::new("report-forecast");
    let input = dir.write("spiky.csv", &csv(ROWS, SPIKE));
    let config = dir.write(
        "canopy.toml",
        &format!(
            "{CONFIG}\n[models.fc]\nkind = \"random_forest\"\nfeatures = [\"level\"]\n\
             target = [\"level\"]\nstep = \"5m\"\nlookback = 12\nhorizon = 2\nn_estimators = 10\n\
             retrain_interval = \"4h\"\n"
        ),
    );
    let (report, out_csv) = (dir.path("report.html"), dir.path("out.csv"));
    let args = |horizon: &'static str| -> Vec<std::ffi::OsString> {
        [
            "replay".into(),
            "--config".into(),
            config.clone().into_os_string(),
            "--input".into(),
            input.clone().into_os_string(),
            "--out".into(),
            out_csv.clone().into_os_string(),
            "--report".into(),
            report.clone().into_os_string(),
            "--report-horizon".into(),
            horizon.into(),
        ]
        .into()
    };
    let refused = Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(args("3"))
        .output()
        .expect("run canopy");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("forecasts 1 to 2 steps ahead"),
        "{stderr}"
    );

    let args = args("2");
    canopy(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    // The first forecast two steps ahead, and the time it was made.
    let text = std::fs::read_to_string(&out_csv).expect("csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,anomaly_score,anomaly_likelihood,anomaly,level_1,level_2")
    );
    let (made, value) = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|cells| !cells[5].is_empty())
        .map(|cells| {
            (
                canopy::source::csv::parse_timestamp(cells[0]).expect("timestamp"),
                cells[5].parse::<f64>().expect("forecast"),
            )
        })
        .expect("a forecast");

    let html = std::fs::read_to_string(&report).expect("report");
    let doc = parse(&html);
    let panel = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("panel") && n.has_tag_name("div"))
        .find(|div| {
            div.descendants()
                .find(|n| n.attribute("class") == Some("title"))
                .and_then(|t| t.text())
                .is_some_and(|t| t.starts_with("forecast of `level` 2 steps ahead"))
        })
        .expect("a forecast panel");
    let svg = panel
        .children()
        .find(|n| n.has_tag_name("svg"))
        .expect("its chart");
    let axes = Axes::of(svg);
    let forecast = drawn(svg, "lines", "polyline")
        .into_iter()
        .filter(|p| p.attribute("stroke") == Some("#C2185B"))
        .map(|p| p.attribute("points").expect("points"))
        .next()
        .expect("a forecast line");
    let (x, y) = forecast
        .split_whitespace()
        .next()
        .and_then(|p| p.split_once(','))
        .map(|(x, y)| (x.parse::<f64>().expect("x"), y.parse::<f64>().expect("y")))
        .expect("a point");
    assert!(
        (x - axes.x(made + 2 * STEP_MS)).abs() <= 1.5,
        "drawn at x {x}"
    );
    assert!((y - axes.y(value)).abs() <= 1.5, "drawn at y {y}");
}

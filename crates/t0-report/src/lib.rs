//! `report`: one self-contained static HTML page per root — what the loop did, read back from
//! the root's verified manifests (each loaded through `t0_manifest::load`, so a tampered one
//! is refused, exit 3) and the outputs they name (each checked against its content hash
//! before it is read). Inline SVG plots (plotters), every plot with its numbers in a table
//! beside it, no script and nothing fetched at view time. Byte-identical for identical roots:
//! no clock, every list in catalog order.

mod outcomes;
mod overtime;
mod plot;
mod sections;

use std::path::PathBuf;

use serde::Serialize;
use t0_catalog::Catalog;
use t0_core::{Progress, Result, Root};

/// Where the page goes under the root, unless `--out` says otherwise.
pub const REPORT_FILE: &str = "report/index.html";

pub struct ReportArgs {
    /// Where to write the page; default `<root>/report/index.html`.
    pub out: Option<PathBuf>,
}

/// What the page holds.
#[derive(Debug, Serialize)]
pub struct ReportSummary {
    pub path: String,
    pub bytes: u64,
    /// Section ids, in page order, with how many plots each has.
    pub sections: Vec<(String, usize)>,
    /// Sections with nothing to show yet (their stage has not run), with the reason.
    pub empty: Vec<(String, String)>,
    /// The manifests the page read, each with its blake3 (also in the footer).
    pub manifests: Vec<(String, String)>,
}

/// One section of the page: a title, a short text saying what it shows, and its parts.
pub(crate) struct Section {
    pub id: &'static str,
    pub title: &'static str,
    pub intro: String,
    pub parts: Vec<Part>,
}

pub(crate) enum Part {
    /// An SVG plot and the table of its numbers.
    Plot {
        svg: String,
        table: Table,
    },
    Table(Table),
}

pub(crate) struct Table {
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

pub fn run(root: &Root, args: &ReportArgs, progress: &dyn Progress) -> Result<ReportSummary> {
    let catalog = Catalog::open_read_only(root)?;
    let reader = sections::Reader::new(root, &catalog)?;
    progress.phase("report", Some(sections::ALL.len() as u64));
    let mut built = Vec::new();
    let mut empty = Vec::new();
    for make in sections::ALL {
        match make(&reader)? {
            sections::Built::Section(s) => built.push(s),
            sections::Built::Empty(id, why) => empty.push((id.to_string(), why)),
        }
        progress.advance(1);
    }
    progress.finish();
    let manifests = reader.manifests();
    let html = page(&built, &empty, &manifests);
    let path = args.out.clone().unwrap_or_else(|| root.join(REPORT_FILE));
    t0_core::fsio::write_atomic(&path, html.as_bytes())?;
    Ok(ReportSummary {
        path: path.display().to_string(),
        bytes: html.len() as u64,
        sections: built
            .iter()
            .map(|s| (s.id.to_string(), s.parts.iter().filter(|p| matches!(p, Part::Plot { .. })).count()))
            .collect(),
        empty,
        manifests,
    })
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn table_html(t: &Table) -> String {
    let head: String = t.head.iter().map(|h| format!("<th>{}</th>", esc(h))).collect();
    let rows: String = t
        .rows
        .iter()
        .map(|r| format!("<tr>{}</tr>", r.iter().map(|c| format!("<td>{}</td>", esc(c))).collect::<String>()))
        .collect();
    format!("<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1500px;color:#222}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}\
.plot{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start;margin:1em 0}\
.plot svg{border:1px solid #eee;max-width:100%;height:auto}\
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left}\
th{background:#f4f4f4}.numbers{max-height:330px;overflow:auto}footer{margin-top:3em;font-size:.8em;color:#555}\
nav a{margin-right:1em}";

fn page(built: &[Section], empty: &[(String, String)], manifests: &[(String, String)]) -> String {
    let mut h = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width\"><title>t0-clip report</title>");
    h.push_str(&format!("<style>{STYLE}</style></head><body><h1>What the loop did</h1><nav>"));
    for s in built {
        h.push_str(&format!("<a href=\"#{}\">{}</a>", s.id, esc(s.title)));
    }
    h.push_str("</nav>");
    for s in built {
        h.push_str(&format!("<section id=\"{}\"><h2>{}</h2><p>{}</p>", s.id, esc(s.title), esc(&s.intro)));
        for p in &s.parts {
            match p {
                Part::Plot { svg, table } => h.push_str(&format!(
                    "<div class=\"plot\">{}<div class=\"numbers\">{}</div></div>",
                    strip_xml_declaration(svg),
                    table_html(table)
                )),
                Part::Table(t) => h.push_str(&format!("<div class=\"numbers\">{}</div>", table_html(t))),
            }
        }
        h.push_str("</section>");
    }
    if !empty.is_empty() {
        h.push_str("<section id=\"not-yet\"><h2>Not shown yet</h2><ul>");
        for (id, why) in empty {
            h.push_str(&format!("<li>{}: {}</li>", esc(id), esc(why)));
        }
        h.push_str("</ul></section>");
    }
    h.push_str("<footer><p>Read from these manifests (blake3 of each file, as the catalog records it):</p><ul>");
    for (path, hash) in manifests {
        h.push_str(&format!("<li><code>{}</code> {}</li>", esc(path), esc(hash)));
    }
    h.push_str("</ul></footer></body></html>\n");
    h
}

/// An SVG inlined in HTML carries no XML declaration.
fn strip_xml_declaration(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

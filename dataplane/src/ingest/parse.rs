//! Text extraction from the supported document formats: plain text, Markdown, HTML and PDF,
//! with where each PDF page starts and where each Markdown or HTML heading stands, so that
//! chunks can say which page and section they come from.
//!
//! Extraction writes marker words (private-use characters, removed from the input first) at
//! page starts and before headings; `finish` normalises whitespace and turns the markers into
//! byte offsets of the final text in the same pass.

use std::fmt;

use pulldown_cmark::{Event, Parser, Tag, TagEnd};
use scraper::{Html, Node};
use serde::{Deserialize, Serialize};

/// Errors while extracting text.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The media type is not one ragplane reads.
    #[error("unsupported document type {0:?}; supported: text/plain, text/markdown, text/html, application/pdf")]
    Unsupported(String),
    /// The bytes are not valid UTF-8 for a text format.
    #[error("failed to read {format} document: not valid UTF-8 ({0})", format = .1)]
    Encoding(std::str::Utf8Error, Format),
    /// The PDF could not be read.
    #[error("failed to extract text from PDF: {0}")]
    Pdf(String),
    /// Extraction produced no text.
    #[error("document contains no text")]
    Empty,
}

/// A supported document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `text/plain`
    Text,
    /// `text/markdown`
    Markdown,
    /// `text/html`
    Html,
    /// `application/pdf`
    Pdf,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.media_type())
    }
}

impl Format {
    /// Reads a media type (parameters such as `charset` are ignored).
    pub fn from_media_type(media_type: &str) -> Result<Self, ParseError> {
        let essence = media_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "text/plain" => Ok(Self::Text),
            "text/markdown" | "text/x-markdown" => Ok(Self::Markdown),
            "text/html" | "application/xhtml+xml" => Ok(Self::Html),
            "application/pdf" => Ok(Self::Pdf),
            _ => Err(ParseError::Unsupported(media_type.to_string())),
        }
    }

    /// Guesses the format from a file name's extension.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "txt" | "text" => Some(Self::Text),
            "md" | "markdown" => Some(Self::Markdown),
            "html" | "htm" => Some(Self::Html),
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }

    /// The canonical media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Text => "text/plain",
            Self::Markdown => "text/markdown",
            Self::Html => "text/html",
            Self::Pdf => "application/pdf",
        }
    }
}

/// Marks the start of a PDF page in raw extracted text.
const PAGE: char = '\u{E000}';
/// Marks the start of a heading in raw extracted text.
const HEADING: char = '\u{E001}';

/// A heading of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heading {
    /// Byte offset of the heading in the extracted text.
    pub offset: usize,
    /// 1 (`#`, `<h1>`) to 6.
    pub level: u8,
    /// The heading's text.
    pub title: String,
}

/// A document's text with its structure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// The text, whitespace normalised.
    pub text: String,
    /// Byte offset where each page starts, in page order (PDF only; empty otherwise).
    pub page_starts: Vec<usize>,
    /// The headings, in document order (Markdown and HTML).
    pub headings: Vec<Heading>,
}

impl Extracted {
    /// The 1-based page on which byte `offset` of the text lies; `None` without pages.
    pub fn page_at(&self, offset: usize) -> Option<u32> {
        let n = self.page_starts.partition_point(|&p| p <= offset);
        (!self.page_starts.is_empty()).then(|| u32::try_from(n.max(1)).unwrap_or(u32::MAX))
    }

    /// The heading path at byte `offset`: each heading in force there, outermost first.
    pub fn heading_path_at(&self, offset: usize) -> Vec<String> {
        let mut path: Vec<&Heading> = Vec::new();
        for h in self.headings.iter().take_while(|h| h.offset <= offset) {
            while path.last().is_some_and(|p| p.level >= h.level) {
                path.pop();
            }
            path.push(h);
        }
        path.into_iter().map(|h| h.title.clone()).collect()
    }
}

/// Extracts plain text from `bytes` in `format`.
pub fn extract_text(format: Format, bytes: &[u8]) -> Result<String, ParseError> {
    extract(format, bytes).map(|e| e.text)
}

/// Extracts text, pages and headings from `bytes` in `format`.
pub fn extract(format: Format, bytes: &[u8]) -> Result<Extracted, ParseError> {
    let strip = |s: &str| s.replace([PAGE, HEADING], "");
    let (raw, titles) = match format {
        Format::Text => (strip(utf8(bytes, format)?), Vec::new()),
        Format::Markdown => markdown_to_text(&strip(utf8(bytes, format)?)),
        Format::Html => html_to_text(&strip(utf8(bytes, format)?)),
        Format::Pdf => (pdf_to_text(bytes)?, Vec::new()),
    };
    let extracted = finish(&raw, titles);
    if extracted.text.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(extracted)
}

/// Collapses runs of spaces and tabs, trims lines and keeps at most one blank line between
/// paragraphs; turns page and heading markers into byte offsets of the result on the way.
/// `titles` are the headings' levels and texts in marker order.
fn finish(raw: &str, titles: Vec<(u8, String)>) -> Extracted {
    let mut out = Extracted::default();
    let mut titles = titles.into_iter();
    let mut pending: Vec<char> = Vec::new();
    let mut blank_run = 0;
    let mut record = |out: &mut Extracted, marker: char, offset: usize| {
        if marker == PAGE {
            out.page_starts.push(offset);
        } else if let Some((level, title)) = titles.next() {
            out.headings.push(Heading {
                offset,
                level,
                title: title.split_whitespace().collect::<Vec<_>>().join(" "),
            });
        }
    };
    for line in raw.lines() {
        let mut text = String::new();
        let mut marks: Vec<(char, usize)> = Vec::new();
        for word in line.split_whitespace() {
            let mut chars = word.chars();
            if let (Some(c @ (PAGE | HEADING)), None) = (chars.next(), chars.next()) {
                pending.push(c);
                continue;
            }
            if !text.is_empty() {
                text.push(' ');
            }
            marks.extend(pending.drain(..).map(|m| (m, text.len())));
            text.push_str(word);
        }
        if text.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.text.is_empty() {
            out.text.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        let base = out.text.len();
        for (m, off) in marks {
            record(&mut out, m, base + off);
        }
        out.text.push_str(&text);
    }
    // Markers after the last text (empty last pages) point at its end.
    let end = out.text.len();
    for m in pending {
        record(&mut out, m, end);
    }
    out
}

fn utf8(bytes: &[u8], format: Format) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|e| ParseError::Encoding(e, format))
}

fn markdown_to_text(md: &str) -> (String, Vec<(u8, String)>) {
    let mut out = String::with_capacity(md.len());
    let mut titles = Vec::new();
    let mut heading: Option<(u8, String)> = None;
    for event in Parser::new(md) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                out.push_str(&format!("\n\n {HEADING} "));
                heading = Some((level as u8, String::new()));
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, title)) = heading.as_mut() {
                    title.push_str(&t);
                }
                out.push_str(&t);
            }
            Event::SoftBreak => out.push(' '),
            Event::HardBreak | Event::Rule => out.push('\n'),
            Event::Start(Tag::Item) => out.push_str("- "),
            Event::End(TagEnd::Heading(_)) => {
                titles.extend(heading.take());
                out.push_str("\n\n");
            }
            Event::End(TagEnd::Paragraph | TagEnd::Item | TagEnd::CodeBlock | TagEnd::TableRow) => {
                out.push_str("\n\n");
            }
            Event::End(TagEnd::TableCell) => out.push_str(" | "),
            _ => {}
        }
    }
    (out, titles)
}

fn html_to_text(html: &str) -> (String, Vec<(u8, String)>) {
    const SKIP: &[&str] = &["script", "style", "noscript", "template", "head"];
    const BLOCK: &[&str] = &[
        "p",
        "div",
        "br",
        "li",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "section",
        "article",
        "pre",
        "blockquote",
        "title",
        "table",
        "ul",
        "ol",
    ];
    let doc = Html::parse_document(html);
    let mut out = String::with_capacity(html.len() / 2);
    // The title lives in <head>, which is otherwise skipped.
    if let Ok(sel) = scraper::Selector::parse("title") {
        if let Some(t) = doc.select(&sel).next() {
            out.extend(t.text());
            out.push_str("\n\n");
        }
    }
    let mut titles = Vec::new();
    let mut stack = vec![(doc.tree.root(), false)];
    while let Some((node, closing)) = stack.pop() {
        match node.value() {
            Node::Element(el) if closing => {
                if BLOCK.contains(&el.name()) {
                    out.push_str("\n\n");
                }
            }
            Node::Element(el) if SKIP.contains(&el.name()) => {}
            Node::Text(t) if !closing => out.push_str(t),
            _ if closing => {}
            Node::Element(el) => {
                let level = match el.name() {
                    "h1" => Some(1),
                    "h2" => Some(2),
                    "h3" => Some(3),
                    "h4" => Some(4),
                    "h5" => Some(5),
                    "h6" => Some(6),
                    _ => None,
                };
                if let (Some(level), Some(e)) = (level, scraper::ElementRef::wrap(node)) {
                    out.push_str(&format!("\n\n {HEADING} "));
                    titles.push((level, e.text().collect::<String>()));
                }
                stack.push((node, true));
                let children: Vec<_> = node.children().collect();
                stack.extend(children.into_iter().rev().map(|c| (c, false)));
            }
            _ => {
                stack.push((node, true));
                let children: Vec<_> = node.children().collect();
                stack.extend(children.into_iter().rev().map(|c| (c, false)));
            }
        }
    }
    (out, titles)
}

fn pdf_to_text(bytes: &[u8]) -> Result<String, ParseError> {
    // pdf-extract can panic on malformed files; a bad upload must fail its document, not the worker.
    let pages = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes))
        .map_err(|_| ParseError::Pdf("the PDF is malformed".into()))?
        .map_err(|e| ParseError::Pdf(e.to_string()))?;
    let mut out = String::new();
    for page in pages {
        out.push_str(&format!(" {PAGE} "));
        out.push_str(&page.replace([PAGE, HEADING], ""));
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_kept_and_whitespace_normalised() {
        let t = extract_text(Format::Text, b"  Hello   world \n\n\n\nSecond\tpara ").unwrap();
        assert_eq!(t, "Hello world\n\nSecond para");
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let err = extract_text(Format::Text, &[0xff, 0xfe, 0x00]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("failed to read text/plain document"),
            "{err}"
        );
    }

    #[test]
    fn empty_document_is_an_error() {
        assert!(matches!(
            extract_text(Format::Markdown, b"   \n  "),
            Err(ParseError::Empty)
        ));
    }

    #[test]
    fn markdown_markup_is_removed() {
        let md = "# Title\n\nSome *emphasis* and `code` and a [link](http://x).\n\n- one\n- two\n";
        let t = extract_text(Format::Markdown, md.as_bytes()).unwrap();
        assert_eq!(
            t,
            "Title\n\nSome emphasis and code and a link.\n\n- one\n\n- two"
        );
    }

    #[test]
    fn html_scripts_and_styles_are_dropped_and_blocks_split() {
        let html = r#"<html><head><title>Doc</title><style>p{color:red}</style></head>
            <body><h1>Heading</h1><p>First <b>bold</b> para.</p><script>alert(1)</script><p>Second</p></body></html>"#;
        let t = extract_text(Format::Html, html.as_bytes()).unwrap();
        assert_eq!(t, "Doc\n\nHeading\n\nFirst bold para.\n\nSecond");
    }

    #[test]
    fn headings_are_located_and_nested() {
        let md = "# Guide\n\nIntro.\n\n## Install\n\nRun it.\n\n### On Linux\n\nApt.\n\n## Use\n\nCall it.\n";
        let e = extract(Format::Markdown, md.as_bytes()).unwrap();
        assert_eq!(
            e.text,
            "Guide\n\nIntro.\n\nInstall\n\nRun it.\n\nOn Linux\n\nApt.\n\nUse\n\nCall it."
        );
        let titles: Vec<(&str, u8)> = e
            .headings
            .iter()
            .map(|h| (h.title.as_str(), h.level))
            .collect();
        assert_eq!(
            titles,
            [("Guide", 1), ("Install", 2), ("On Linux", 3), ("Use", 2)]
        );
        for h in &e.headings {
            assert!(e.text[h.offset..].starts_with(&h.title), "{h:?}");
        }
        let apt = e.text.find("Apt").unwrap();
        assert_eq!(e.heading_path_at(apt), ["Guide", "Install", "On Linux"]);
        let call = e.text.find("Call").unwrap();
        assert_eq!(e.heading_path_at(call), ["Guide", "Use"]);
        assert!(e.heading_path_at(0).len() == 1 && e.page_at(0).is_none());

        let html = "<html><body><h1>Top</h1><p>a</p><h2>Sub <b>part</b></h2><p>b</p></body></html>";
        let e = extract(Format::Html, html.as_bytes()).unwrap();
        assert_eq!(e.text, "Top\n\na\n\nSub part\n\nb");
        assert_eq!(e.heading_path_at(e.text.len() - 1), ["Top", "Sub part"]);
        // Markers in the input are not taken for structure.
        let e = extract(Format::Text, "x \u{E000} y \u{E001} z".as_bytes()).unwrap();
        assert_eq!(
            (e.text.as_str(), e.page_starts.len(), e.headings.len()),
            ("x y z", 0, 0)
        );
    }

    #[test]
    fn pdf_pages_are_located() {
        let pdf = crate::ingest::testdata::pdf_with_pages(&["First page text", "Second page text"]);
        let e = extract(Format::Pdf, &pdf).unwrap();
        assert_eq!(e.page_starts.len(), 2, "{e:?}");
        let second = e.text.find("Second").unwrap();
        assert_eq!(e.page_at(second), Some(2));
        assert_eq!(e.page_at(e.text.find("First").unwrap()), Some(1));
    }

    #[test]
    fn pdf_text_is_extracted() {
        let pdf = crate::ingest::testdata::pdf_with_text("Quarterly revenue grew by 42 percent");
        let t = extract_text(Format::Pdf, &pdf).unwrap();
        assert!(t.contains("Quarterly revenue grew by 42 percent"), "{t:?}");
    }

    #[test]
    fn garbage_pdf_is_an_error_not_a_panic() {
        let err = extract_text(Format::Pdf, b"%PDF-1.4 this is not really a pdf").unwrap_err();
        assert!(matches!(err, ParseError::Pdf(_)), "{err}");
    }

    #[test]
    fn media_types_and_extensions() {
        assert_eq!(
            Format::from_media_type("text/markdown; charset=utf-8").unwrap(),
            Format::Markdown
        );
        assert!(matches!(
            Format::from_media_type("application/zip"),
            Err(ParseError::Unsupported(_))
        ));
        assert_eq!(Format::from_file_name("a/b/report.PDF"), Some(Format::Pdf));
        assert_eq!(Format::from_file_name("notes.htm"), Some(Format::Html));
        assert_eq!(Format::from_file_name("archive.zip"), None);
    }
}

//! Text extraction from the supported document formats: plain text, Markdown, HTML and PDF,
//! with where each PDF page starts and where each Markdown or HTML heading stands, so that
//! chunks can say which page and section they come from.
//!
//! Every parser writes into one [`Sink`], which normalises whitespace as the text arrives,
//! turns page and heading marks into byte offsets of the final text, and stops the parse as
//! soon as the text passes the [`Budget`]: a huge document fails early instead of being
//! extracted whole and measured afterwards.

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
    /// The extracted text grew past the budget.
    #[error(
        "the extracted text passed {limit} bytes, the limit set by chunking.max_document_bytes"
    )]
    TooLarge {
        /// The budget's byte limit.
        limit: usize,
    },
}

/// Limits on one extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Largest extracted text, in bytes; the parse stops with [`ParseError::TooLarge`] as soon
    /// as the text passes it.
    pub max_text_bytes: usize,
}

impl Budget {
    /// No limit.
    pub const UNLIMITED: Self = Self {
        max_text_bytes: usize::MAX,
    };
}

/// A supported document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
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

/// A heading of the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heading {
    /// Byte offset of the heading in the extracted text.
    pub offset: usize,
    /// 1 (`#`, `<h1>`) to 6.
    pub level: u8,
    /// The heading's text.
    pub title: String,
}

/// A document's text with its structure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// Extracts text, pages and headings from `bytes` in `format`, within `budget`.
pub fn extract(format: Format, bytes: &[u8], budget: Budget) -> Result<Extracted, ParseError> {
    let mut sink = Sink::new(budget);
    match format {
        Format::Text => sink.push_str(utf8(bytes, format)?)?,
        Format::Markdown => markdown_to_text(utf8(bytes, format)?, &mut sink)?,
        Format::Html => html_to_text(utf8(bytes, format)?, &mut sink)?,
        Format::Pdf => pdf_to_text(bytes, &mut sink)?,
    }
    let extracted = sink.finish()?;
    if extracted.text.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(extracted)
}

/// A mark waiting for the next word: it lands at that word's offset.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Page,
    /// Index into the output's headings.
    Heading(usize),
}

/// Normalising writer of extracted text: collapses runs of spaces and tabs, trims lines, keeps
/// at most one blank line between paragraphs, places marks, and enforces the budget.
struct Sink {
    out: Extracted,
    max: usize,
    /// The word being read.
    word: String,
    /// Whether the current line has text yet.
    line_has_text: bool,
    /// Empty lines since the last line with text.
    blank_run: usize,
    pending: Vec<Mark>,
}

impl Sink {
    fn new(budget: Budget) -> Self {
        Self {
            out: Extracted::default(),
            max: budget.max_text_bytes,
            word: String::new(),
            line_has_text: false,
            blank_run: 0,
            pending: Vec::new(),
        }
    }

    /// Whether no text has been written yet.
    fn is_empty(&self) -> bool {
        self.out.text.is_empty() && self.word.is_empty()
    }

    fn push_str(&mut self, s: &str) -> Result<(), ParseError> {
        for c in s.chars() {
            if c == '\n' {
                self.end_line()?;
            } else if c.is_whitespace() {
                self.end_word()?;
            } else {
                self.word.push(c);
                if self.out.text.len().saturating_add(self.word.len()) > self.max {
                    return Err(ParseError::TooLarge { limit: self.max });
                }
            }
        }
        Ok(())
    }

    /// Ends the paragraph: what follows starts after a blank line.
    fn paragraph(&mut self) -> Result<(), ParseError> {
        self.push_str("\n\n")
    }

    /// A page starts at the next word.
    fn page(&mut self) -> Result<(), ParseError> {
        self.end_word()?;
        self.pending.push(Mark::Page);
        Ok(())
    }

    /// A heading of `level` starts at the next word; returns its index for [`Sink::title`].
    fn heading(&mut self, level: u8) -> Result<usize, ParseError> {
        self.end_word()?;
        self.out.headings.push(Heading {
            offset: usize::MAX,
            level,
            title: String::new(),
        });
        let i = self.out.headings.len() - 1;
        self.pending.push(Mark::Heading(i));
        Ok(i)
    }

    /// Sets the title of heading `i`, whitespace collapsed.
    fn title(&mut self, i: usize, title: &str) {
        if let Some(h) = self.out.headings.get_mut(i) {
            h.title = title.split_whitespace().collect::<Vec<_>>().join(" ");
        }
    }

    fn end_word(&mut self) -> Result<(), ParseError> {
        if self.word.is_empty() {
            return Ok(());
        }
        if self.line_has_text {
            self.out.text.push(' ');
        } else {
            if !self.out.text.is_empty() {
                self.out
                    .text
                    .push_str(if self.blank_run > 0 { "\n\n" } else { "\n" });
            }
            self.blank_run = 0;
            self.line_has_text = true;
        }
        self.place_marks(self.out.text.len());
        self.out.text.push_str(&self.word);
        self.word.clear();
        if self.out.text.len() > self.max {
            return Err(ParseError::TooLarge { limit: self.max });
        }
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), ParseError> {
        self.end_word()?;
        if !self.line_has_text {
            self.blank_run += 1;
        }
        self.line_has_text = false;
        Ok(())
    }

    fn place_marks(&mut self, offset: usize) {
        for mark in self.pending.drain(..) {
            match mark {
                Mark::Page => self.out.page_starts.push(offset),
                Mark::Heading(i) => {
                    if let Some(h) = self.out.headings.get_mut(i) {
                        h.offset = offset;
                    }
                }
            }
        }
    }

    fn finish(mut self) -> Result<Extracted, ParseError> {
        self.end_word()?;
        // Marks after the last text (empty last pages) point at its end.
        let end = self.out.text.len();
        self.place_marks(end);
        Ok(self.out)
    }
}

fn utf8(bytes: &[u8], format: Format) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|e| ParseError::Encoding(e, format))
}

fn markdown_to_text(md: &str, sink: &mut Sink) -> Result<(), ParseError> {
    let mut heading: Option<(usize, String)> = None;
    for event in Parser::new(md) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                sink.paragraph()?;
                heading = Some((sink.heading(level as u8)?, String::new()));
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, title)) = heading.as_mut() {
                    title.push_str(&t);
                }
                sink.push_str(&t)?;
            }
            Event::SoftBreak => sink.push_str(" ")?,
            Event::HardBreak | Event::Rule => sink.push_str("\n")?,
            Event::Start(Tag::Item) => sink.push_str("- ")?,
            Event::End(TagEnd::Heading(_)) => {
                if let Some((i, title)) = heading.take() {
                    sink.title(i, &title);
                }
                sink.paragraph()?;
            }
            Event::End(TagEnd::Paragraph | TagEnd::Item | TagEnd::CodeBlock | TagEnd::TableRow) => {
                sink.paragraph()?;
            }
            Event::End(TagEnd::TableCell) => sink.push_str(" | ")?,
            _ => {}
        }
    }
    Ok(())
}

fn html_to_text(html: &str, sink: &mut Sink) -> Result<(), ParseError> {
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
    // The title lives in <head>, which is otherwise skipped.
    if let Ok(sel) = scraper::Selector::parse("title") {
        if let Some(t) = doc.select(&sel).next() {
            for part in t.text() {
                sink.push_str(part)?;
            }
            sink.paragraph()?;
        }
    }
    let mut stack = vec![(doc.tree.root(), false)];
    while let Some((node, closing)) = stack.pop() {
        match node.value() {
            Node::Element(el) if closing => {
                if BLOCK.contains(&el.name()) {
                    sink.paragraph()?;
                }
            }
            Node::Element(el) if SKIP.contains(&el.name()) => {}
            Node::Text(t) if !closing => sink.push_str(t)?,
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
                    sink.paragraph()?;
                    let i = sink.heading(level)?;
                    sink.title(i, &e.text().collect::<String>());
                }
                stack.push((node, true));
                stack.extend(node.children().rev().map(|c| (c, false)));
            }
            _ => {
                stack.push((node, true));
                stack.extend(node.children().rev().map(|c| (c, false)));
            }
        }
    }
    Ok(())
}

fn pdf_to_text(bytes: &[u8], sink: &mut Sink) -> Result<(), ParseError> {
    use pdf_extract::{Document, PlainTextOutput};
    // pdf-extract can panic on malformed files; a bad upload must fail its document, not the worker.
    let contained = |f: &mut dyn FnMut() -> Result<(), ParseError>| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err(ParseError::Pdf("the PDF is malformed".into())))
    };
    let mut doc = None;
    contained(&mut || {
        let mut d = Document::load_mem(bytes).map_err(|e| ParseError::Pdf(e.to_string()))?;
        if d.is_encrypted() {
            d.decrypt("")
                .map_err(|e| ParseError::Pdf(format!("the PDF is encrypted: {e}")))?;
        }
        check_page_tree(&d)?;
        doc = Some(d);
        Ok(())
    })?;
    let Some(doc) = doc else {
        return Err(ParseError::Pdf("the PDF is malformed".into()));
    };
    // One page at a time, so the budget stops a long document before all of it is extracted.
    // A page that cannot be read is left empty; the document fails only when none can be.
    let mut first_error = None;
    for page in doc.get_pages().into_keys() {
        let mut text = String::new();
        let read = contained(&mut || {
            let mut output = PlainTextOutput::new(&mut text);
            pdf_extract::output_doc_page(&doc, &mut output, page)
                .map_err(|e| ParseError::Pdf(e.to_string()))
        });
        sink.page()?;
        match read {
            Ok(()) => {
                sink.push_str(&text)?;
                sink.push_str("\n")?;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if sink.is_empty() => Err(e),
        _ => Ok(()),
    }
}

/// Refuses a page tree in which following `/Parent` from a page comes back to where it has
/// been: pdf-extract looks up inherited attributes along that chain and would never stop.
fn check_page_tree(doc: &pdf_extract::Document) -> Result<(), ParseError> {
    for id in doc.get_pages().into_values() {
        let mut seen = std::collections::HashSet::new();
        let mut next = Some(id);
        while let Some(id) = next {
            if !seen.insert(id) {
                return Err(ParseError::Pdf(format!(
                    "the PDF's page tree has a cycle at object {} {}",
                    id.0, id.1
                )));
            }
            next = doc
                .get_dictionary(id)
                .ok()
                .and_then(|d| d.get(b"Parent").ok())
                .and_then(|p| p.as_reference().ok());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract_text(format: Format, bytes: &[u8]) -> Result<String, ParseError> {
        extract(format, bytes).map(|e| e.text)
    }

    fn extract(format: Format, bytes: &[u8]) -> Result<Extracted, ParseError> {
        super::extract(format, bytes, Budget::UNLIMITED)
    }

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
        // Private-use characters in the input are text, not structure.
        let e = extract(Format::Text, "x \u{E000} y \u{E001} z".as_bytes()).unwrap();
        assert_eq!(
            (e.text.as_str(), e.page_starts.len(), e.headings.len()),
            ("x \u{E000} y \u{E001} z", 0, 0)
        );
    }

    #[test]
    fn pdf_pages_are_located() {
        let pdf = crate::testdata::pdf_with_pages(&["First page text", "Second page text"]);
        let e = extract(Format::Pdf, &pdf).unwrap();
        assert_eq!(e.page_starts.len(), 2, "{e:?}");
        let second = e.text.find("Second").unwrap();
        assert_eq!(e.page_at(second), Some(2));
        assert_eq!(e.page_at(e.text.find("First").unwrap()), Some(1));
    }

    #[test]
    fn pdf_text_is_extracted() {
        let pdf = crate::testdata::pdf_with_text("Quarterly revenue grew by 42 percent");
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

    #[test]
    fn the_budget_stops_the_parse_as_the_text_grows() {
        let budget = |n| Budget { max_text_bytes: n };
        // Exactly at the limit passes; whitespace that normalisation removes does not count.
        let e = super::extract(Format::Text, b"  abc   def  \n\n\n", budget(7)).unwrap();
        assert_eq!(e.text, "abc def");
        let err = super::extract(Format::Text, b"abc defg", budget(7)).unwrap_err();
        assert!(matches!(err, ParseError::TooLarge { limit: 7 }), "{err}");
        assert!(
            err.to_string().contains("chunking.max_document_bytes"),
            "{err}"
        );
        // One endless word is stopped too, not only many words.
        let long = "x".repeat(10_000);
        let err = super::extract(Format::Text, long.as_bytes(), budget(100)).unwrap_err();
        assert!(matches!(err, ParseError::TooLarge { .. }));
        for (format, doc) in [
            (Format::Markdown, format!("# T\n\n{}", "word ".repeat(1000))),
            (Format::Html, format!("<p>{}</p>", "word ".repeat(1000))),
        ] {
            let err = super::extract(format, doc.as_bytes(), budget(1000)).unwrap_err();
            assert!(
                matches!(err, ParseError::TooLarge { limit: 1000 }),
                "{format}: {err}"
            );
            assert!(super::extract(format, doc.as_bytes(), budget(10_000)).is_ok());
        }
        let pdf = crate::testdata::pdf_with_pages(&["First page text", "Second page text"]);
        assert!(matches!(
            super::extract(Format::Pdf, &pdf, budget(20)),
            Err(ParseError::TooLarge { limit: 20 })
        ));
    }

    /// Found by the `parse_pdf` fuzz target: pdf-extract panics ("F1") on a font resource
    /// that is named but missing. The panic is contained and the document fails cleanly.
    #[test]
    fn a_pdf_that_makes_pdf_extract_panic_is_an_error() {
        let pdf = include_bytes!("../tests/data/pdf-missing-font-key.pdf");
        let err = extract(Format::Pdf, pdf).unwrap_err();
        assert!(
            matches!(err, ParseError::Pdf(ref m) if m == "the PDF is malformed"),
            "{err}"
        );
    }

    /// Found by the `parse_pdf` fuzz target: a page that is its own parent sent pdf-extract's
    /// inherited-attribute lookup round the cycle forever.
    #[test]
    fn a_pdf_whose_page_tree_has_a_cycle_is_an_error() {
        let pdf = include_bytes!("../tests/data/pdf-page-parent-cycle.pdf");
        let err = extract(Format::Pdf, pdf).unwrap_err();
        assert!(err.to_string().contains("page tree has a cycle"), "{err}");
    }

    #[test]
    fn the_example_corpus_extracts_well_formed() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/corpus");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let format = Format::from_file_name(&name).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            for budget in [
                Budget::UNLIMITED,
                Budget {
                    max_text_bytes: 100,
                },
            ] {
                match super::extract(format, &bytes, budget) {
                    Ok(e) => crate::testdata::assert_well_formed(&e, budget),
                    Err(ParseError::TooLarge { limit: 100 }) => {}
                    Err(e) => panic!("{name}: {e}"),
                }
            }
            seen += 1;
        }
        assert!(seen >= 5);
    }
}

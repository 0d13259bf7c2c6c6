//! Text extraction from the supported document formats: plain text, Markdown, HTML and PDF.

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

/// Extracts plain text from `bytes` in `format`.
pub fn extract_text(format: Format, bytes: &[u8]) -> Result<String, ParseError> {
    let text = match format {
        Format::Text => utf8(bytes, format)?.to_string(),
        Format::Markdown => markdown_to_text(utf8(bytes, format)?),
        Format::Html => html_to_text(utf8(bytes, format)?),
        Format::Pdf => pdf_to_text(bytes)?,
    };
    let text = normalize_whitespace(&text);
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(text)
}

fn utf8(bytes: &[u8], format: Format) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|e| ParseError::Encoding(e, format))
}

fn markdown_to_text(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    for event in Parser::new(md) {
        match event {
            Event::Text(t) | Event::Code(t) => out.push_str(&t),
            Event::SoftBreak => out.push(' '),
            Event::HardBreak | Event::Rule => out.push('\n'),
            Event::Start(Tag::Item) => out.push_str("- "),
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::Item
                | TagEnd::CodeBlock
                | TagEnd::TableRow,
            ) => {
                out.push_str("\n\n");
            }
            Event::End(TagEnd::TableCell) => out.push_str(" | "),
            _ => {}
        }
    }
    out
}

fn html_to_text(html: &str) -> String {
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
            _ => {
                stack.push((node, true));
                let children: Vec<_> = node.children().collect();
                stack.extend(children.into_iter().rev().map(|c| (c, false)));
            }
        }
    }
    out
}

fn pdf_to_text(bytes: &[u8]) -> Result<String, ParseError> {
    // pdf-extract can panic on malformed files; a bad upload must fail its document, not the worker.
    std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(bytes))
        .map_err(|_| ParseError::Pdf("the PDF is malformed".into()))?
        .map_err(|e| ParseError::Pdf(e.to_string()))
}

/// Collapses runs of spaces and tabs, trims lines and keeps at most one blank line between
/// paragraphs.
pub fn normalize_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(&line);
    }
    out
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

//! Parsing one document where `[parsing]` says: in a child process under memory and CPU limits
//! (the default), or on a blocking thread of this process.
//!
//! The child is this program run again with the hidden `parse-document` subcommand (see
//! [`ragplane_parse::child`]). It gets no environment, reads the document on stdin and answers
//! on stdout; it is killed when its time is up or when the job that asked is dropped. How it
//! ended becomes the document's failure reason, and `ragplane_parse_children_failed_total`
//! counts endings by cause.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use ragplane_config::{ParseIsolation, ParsingConfig};
use ragplane_parse::child::{self, Answer, Cause, Limits};
use ragplane_parse::{Budget, Extracted, Format};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};

/// The most of a child's stderr kept for its failure reason.
const STDERR_CAP: u64 = 64 * 1024;

/// Extracts `body` in `format` within `budget`, where `config` says. A document that cannot be
/// read fails as invalid `content` (not retried); a child that cannot be started is an
/// internal error (retried).
pub async fn extract(
    config: &ParsingConfig,
    format: Format,
    body: Bytes,
    budget: Budget,
) -> Result<Extracted> {
    let started = std::time::Instant::now();
    let out = match config.isolation {
        ParseIsolation::Inline => {
            tokio::task::spawn_blocking(move || ragplane_parse::extract(format, &body, budget))
                .await
                .map_err(|e| Error::Internal(format!("parsing task failed: {e}")))?
                .map_err(|e| Error::invalid("content", e.to_string()))
        }
        ParseIsolation::Process => in_child(config, format, body, budget).await,
    };
    crate::metrics::PARSE_SECONDS
        .with_label_values(&[format.media_type()])
        .observe(started.elapsed().as_secs_f64());
    out
}

async fn in_child(
    config: &ParsingConfig,
    format: Format,
    body: Bytes,
    budget: Budget,
) -> Result<Extracted> {
    let program = match &config.program {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| Error::Internal(format!("cannot find this program to parse with: {e}")))?,
    };
    let limits = Limits::new(config.max_memory_mib, config.timeout_secs);
    let mut child = tokio::process::Command::new(&program)
        .arg("parse-document")
        .args(["--format", format.media_type()])
        .args(["--max-text-bytes", &budget.max_text_bytes.to_string()])
        .args(["--max-memory-mib", &config.max_memory_mib.to_string()])
        .args(["--cpu-secs", &config.timeout_secs.to_string()])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Error::Internal(format!(
                "cannot start the parser {} (parsing.program): {e}",
                program.display()
            ))
        })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(Error::Internal("the parser's pipes are missing".into()));
    };
    // The answer holds at most the budgeted text plus its structure; more is not an answer.
    let stdout_cap = u64::try_from(budget.max_text_bytes.saturating_mul(2))
        .unwrap_or(u64::MAX)
        .saturating_add(1 << 20);
    let run = async {
        let write = async {
            // A child that dies early closes its stdin; its exit status says why.
            let _ = stdin.write_all(&body).await;
            drop(stdin);
        };
        let read = async {
            let mut out = Vec::new();
            stdout
                .take(stdout_cap)
                .read_to_end(&mut out)
                .await
                .map(|_| out)
        };
        let read_err = async {
            let mut err = Vec::new();
            let _ = stderr.take(STDERR_CAP).read_to_end(&mut err).await;
            err
        };
        let ((), out, err) = tokio::join!(write, read, read_err);
        let status = child.wait().await;
        (out, err, status)
    };
    // CPU time runs out first for a busy child; the wall clock catches one that waits.
    let wall = Duration::from_secs(config.timeout_secs.saturating_add(2));
    let Ok((out, err, status)) = tokio::time::timeout(wall, run).await else {
        // Dropping the future dropped the child, which kills it.
        failed(Cause::Time);
        return Err(Error::invalid(
            "content",
            format!(
                "parsing took longer than {} s (parsing.timeout_secs)",
                config.timeout_secs
            ),
        ));
    };
    let status = status.map_err(|e| Error::Internal(format!("waiting for the parser: {e}")))?;
    let out = out.map_err(|e| Error::Internal(format!("reading the parser's answer: {e}")))?;
    if !status.success() {
        let stderr = String::from_utf8_lossy(&err);
        let ending = child::explain_exit(status, &stderr, limits);
        failed(ending.cause);
        tracing::warn!(program = %program.display(), %status, stderr = %stderr.trim(), "a parsing child failed");
        return Err(Error::invalid("content", ending.reason));
    }
    match child::decode(&out) {
        Ok(Answer::Extracted(e)) => Ok(e),
        Ok(Answer::Failed(why)) => Err(Error::invalid("content", why)),
        Err(e) => {
            failed(Cause::Crash);
            Err(Error::Internal(format!(
                "the parser {} answered with something unreadable ({e}); is parsing.program a ragplane binary of this version?",
                program.display()
            )))
        }
    }
}

fn failed(cause: Cause) {
    crate::metrics::PARSE_CHILDREN_FAILED
        .with_label_values(&[cause.as_str()])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn inline_parsing_applies_the_budget() {
        let config = ParsingConfig {
            isolation: ParseIsolation::Inline,
            ..ParsingConfig::default()
        };
        let budget = Budget { max_text_bytes: 5 };
        let e = extract(&config, Format::Text, Bytes::from_static(b"hello"), budget)
            .await
            .unwrap();
        assert_eq!(e.text, "hello");
        let err = extract(
            &config,
            Format::Text,
            Bytes::from_static(b"hello world"),
            budget,
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("chunking.max_document_bytes"),
            "{err}"
        );
    }

    async fn parse_one_byte(config: &ParsingConfig) -> Result<Extracted> {
        extract(
            config,
            Format::Text,
            Bytes::from_static(b"x"),
            Budget::UNLIMITED,
        )
        .await
    }

    #[tokio::test]
    async fn a_program_that_is_not_a_parser_is_an_internal_error_naming_the_setting() {
        let config = ParsingConfig {
            program: Some("/nonexistent/ragplane".into()),
            ..ParsingConfig::default()
        };
        let err = parse_one_byte(&config).await.unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err}");
        assert!(err.to_string().contains("parsing.program"), "{err}");
    }

    #[tokio::test]
    async fn a_parser_that_hangs_is_killed_at_the_time_limit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let hung = dir.path().join("hung-parser");
        std::fs::write(&hung, "#!/bin/sh\nexec sleep 60\n").unwrap();
        std::fs::set_permissions(&hung, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = ParsingConfig {
            program: Some(hung),
            timeout_secs: 1,
            ..ParsingConfig::default()
        };
        let started = std::time::Instant::now();
        let err = parse_one_byte(&config).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            matches!(&err, Error::Invalid { message, .. } if message.contains("longer than 1 s (parsing.timeout_secs)")),
            "{err}"
        );
    }
}

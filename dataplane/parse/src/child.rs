//! The child-process side of isolated parsing, and the parent's reading of how a child ended.
//!
//! The data plane parses each document in a child process (its own binary, run with a hidden
//! subcommand) so that a decompression bomb or a parser bug costs that document, never the
//! process serving the API. The child first limits itself (address space and CPU seconds), then
//! reads the document from stdin and writes one [`Answer`] to stdout, postcard-encoded. A child
//! that hits a limit is ended by the kernel or by its allocator; [`explain_exit`] turns that
//! ending into the reason the document is marked failed with.

use std::io::{self, Read, Write};
use std::process::ExitStatus;

use serde::{Deserialize, Serialize};

use crate::extract::{extract, Budget, Extracted, Format};

/// The limits a child puts on itself before reading any input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest address space, in bytes.
    pub memory_bytes: u64,
    /// CPU seconds; the kernel sends SIGXCPU past them and SIGKILL a second later.
    pub cpu_secs: u64,
}

/// What a child writes to stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// The document's text and structure.
    Extracted(Extracted),
    /// Why the document cannot be read (bad format, no text, over the budget).
    Failed(String),
}

/// Applies `limits` to the calling process.
pub fn limit_self(limits: Limits) -> io::Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(limits.memory_bytes),
            maximum: Some(limits.memory_bytes),
        },
    )?;
    setrlimit(
        Resource::Cpu,
        Rlimit {
            current: Some(limits.cpu_secs),
            maximum: Some(limits.cpu_secs.saturating_add(1)),
        },
    )?;
    Ok(())
}

/// Reads one document in `format` from `input`, extracts it within `budget`, and writes the
/// encoded [`Answer`] to `output`.
pub fn serve(
    format: Format,
    budget: Budget,
    mut input: impl Read,
    mut output: impl Write,
) -> io::Result<()> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    let answer = match extract(format, &bytes, budget) {
        Ok(e) => Answer::Extracted(e),
        Err(e) => Answer::Failed(e.to_string()),
    };
    drop(bytes);
    let encoded = postcard::to_stdvec(&answer).map_err(io::Error::other)?;
    output.write_all(&encoded)?;
    output.flush()
}

/// Decodes a child's stdout.
pub fn decode(stdout: &[u8]) -> Result<Answer, postcard::Error> {
    postcard::from_bytes(stdout)
}

/// What ended a child that gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// It ran out of its address space (or was killed, which the OOM killer does).
    Memory,
    /// It ran out of CPU time.
    Time,
    /// Anything else: a signal or a failed exit.
    Crash,
}

impl Cause {
    /// The cause as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Time => "time",
            Self::Crash => "crash",
        }
    }
}

/// How a child that did not exit cleanly ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// What ended it.
    pub cause: Cause,
    /// The document's failure reason, naming the setting to change where one would help.
    pub reason: String,
}

impl Limits {
    /// Limits of `memory_mib` MiB of address space and `cpu_secs` CPU seconds.
    pub fn new(memory_mib: u64, cpu_secs: u64) -> Self {
        Self {
            memory_bytes: memory_mib.saturating_mul(1024 * 1024),
            cpu_secs,
        }
    }
}

/// Why a child that did not exit cleanly ended. `stderr` is what it printed; `limits` what it
/// ran under.
pub fn explain_exit(status: ExitStatus, stderr: &str, limits: Limits) -> Ending {
    use std::os::unix::process::ExitStatusExt;
    let memory_mib = limits.memory_bytes / (1024 * 1024);
    let out_of_memory = stderr.contains("memory allocation of") || stderr.contains("out of memory");
    const SIGABRT: i32 = 6;
    const SIGKILL: i32 = 9;
    const SIGXCPU: i32 = 24;
    let (cause, reason) = match status.signal() {
        _ if out_of_memory => (
            Cause::Memory,
            format!(
                "parsing needed more than its memory budget of {memory_mib} MiB (parsing.max_memory_mib)"
            ),
        ),
        Some(SIGXCPU) => (
            Cause::Time,
            format!(
                "parsing used more than its {} s of CPU time (parsing.timeout_secs)",
                limits.cpu_secs
            ),
        ),
        Some(SIGKILL) => (
            Cause::Memory,
            format!(
                "the parser was killed: past its {} s time limit (parsing.timeout_secs) or its memory budget of {memory_mib} MiB (parsing.max_memory_mib)",
                limits.cpu_secs
            ),
        ),
        Some(SIGABRT) => (
            Cause::Crash,
            format!("the parser aborted: {}", last_line(stderr)),
        ),
        Some(sig) => (
            Cause::Crash,
            format!("the parser crashed with signal {sig}: {}", last_line(stderr)),
        ),
        None => (
            Cause::Crash,
            format!(
                "the parser exited with status {}: {}",
                status.code().unwrap_or(-1),
                last_line(stderr)
            ),
        ),
    };
    Ending { cause, reason }
}

fn last_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map_or("no message", str::trim)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn an_answer_round_trips_through_the_pipe_encoding() {
        let mut out = Vec::new();
        serve(
            Format::Markdown,
            Budget::UNLIMITED,
            &b"# Title\n\nBody text."[..],
            &mut out,
        )
        .unwrap();
        let Answer::Extracted(e) = decode(&out).unwrap() else {
            panic!("expected text");
        };
        assert_eq!(e.text, "Title\n\nBody text.");
        assert_eq!(e.headings[0].title, "Title");

        let mut out = Vec::new();
        let budget = Budget { max_text_bytes: 4 };
        serve(Format::Text, budget, &b"too long"[..], &mut out).unwrap();
        let Answer::Failed(why) = decode(&out).unwrap() else {
            panic!("expected a failure");
        };
        assert!(why.contains("4 bytes"), "{why}");
        assert!(decode(&out[..out.len() / 2]).is_err() || out.len() < 2);
    }

    #[test]
    fn endings_are_explained_with_the_setting_to_change() {
        let limits = Limits {
            memory_bytes: 512 << 20,
            cpu_secs: 30,
        };
        let signal = |s: i32| ExitStatus::from_raw(s);
        let oom = explain_exit(
            signal(6),
            "memory allocation of 1073741824 bytes failed\n",
            limits,
        );
        assert_eq!(oom.cause, Cause::Memory);
        let oom = oom.reason;
        assert!(
            oom.contains("512 MiB") && oom.contains("parsing.max_memory_mib"),
            "{oom}"
        );
        let cpu = explain_exit(signal(24), "", limits);
        assert_eq!(cpu.cause, Cause::Time);
        let cpu = cpu.reason;
        assert!(
            cpu.contains("30 s") && cpu.contains("parsing.timeout_secs"),
            "{cpu}"
        );
        let killed = explain_exit(signal(9), "", limits).reason;
        assert!(killed.contains("killed"), "{killed}");
        let exited = explain_exit(
            ExitStatus::from_raw(101 << 8),
            "thread panicked\nat x\n",
            limits,
        );
        assert_eq!(exited.cause, Cause::Crash);
        assert_eq!(exited.reason, "the parser exited with status 101: at x");
    }

    #[test]
    fn a_child_limits_itself() {
        // In a child process of the test harness, so the limits do not bind the tests.
        if std::env::var_os("RAGPLANE_PARSE_LIMIT_CHILD").is_some() {
            limit_self(Limits::new(256, 5)).unwrap();
            let big: Vec<u8> = Vec::with_capacity(1 << 30);
            std::hint::black_box(&big);
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "child::tests::a_child_limits_itself",
                "--nocapture",
            ])
            .env("RAGPLANE_PARSE_LIMIT_CHILD", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "1 GiB fit under a 256 MiB limit");
        let why = explain_exit(out.status, &stderr, Limits::new(256, 5));
        assert_eq!(why.cause, Cause::Memory, "{why:?}\n{stderr}");
        assert!(why.reason.contains("256 MiB"), "{why:?}\n{stderr}");
    }
}

//! Error types: [`ParseError`] for the pure parsers, [`Error`] for the I/O layer.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::ProcFile;

/// Where in a file a parse error was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// 1-based line number of a text file.
    Line(usize),
    /// Byte offset into a binary file (auxv, pagemap).
    Offset(usize),
    /// The file as a whole (for example: it is empty, or a required line is absent).
    File,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Offset(o) => write!(f, "offset {o:#x}"),
            Location::File => f.write_str("whole file"),
        }
    }
}

/// What was wrong with the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// A required field or line is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A field is present but its value does not parse.
    #[error("invalid {field}: {value:?}")]
    Invalid {
        /// Name of the field.
        field: &'static str,
        /// The offending text (truncated to 64 bytes, lossy UTF-8).
        value: String,
    },
    /// The line does not have the expected shape.
    #[error("malformed line: {0}")]
    Malformed(&'static str),
    /// A binary file whose length is not a multiple of its record size.
    #[error("length {len} is not a multiple of {unit}")]
    BadLength {
        /// Length of the input in bytes.
        len: usize,
        /// Record size in bytes.
        unit: usize,
    },
}

/// A parse failure in one /proc file, naming the file and the line (or offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} {location}: {kind}")]
pub struct ParseError {
    /// Which kind of /proc file was being parsed.
    pub file: ProcFile,
    /// Where in it.
    pub location: Location,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

/// Errors of the I/O layer ([`crate::ProcDir`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `pidfd_open(pid)` failed (ESRCH: no such process).
    #[error("opening a pidfd for pid {pid}")]
    PidfdOpen {
        /// The pid.
        pid: i32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Opening the `/proc/<pid>` directory (or a `task/<tid>` below it) failed.
    #[error("opening {path}")]
    OpenDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The pidfd check through `/proc/thread-self/fdinfo/<pidfd>` could not be done.
    #[error("checking the pidfd of pid {pid} through {path}")]
    PidfdCheck {
        /// The pid.
        pid: i32,
        /// The fdinfo file read.
        path: PathBuf,
        /// The underlying failure (I/O or parse).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The process exited and was reaped while its /proc directory was being opened: the
    /// directory may belong to a recycled pid and was dropped.
    #[error("pid {pid} is gone (reaped) after opening /proc/{pid}")]
    Vanished {
        /// The pid.
        pid: i32,
    },
    /// The pidfd refers to a process whose pid (in this /proc's namespace) is not the one asked.
    #[error("the pidfd given for pid {pid} refers to pid {found}")]
    PidfdMismatch {
        /// The pid asked for.
        pid: i32,
        /// The pid the pidfd refers to.
        found: i32,
    },
    /// Reading a file failed.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading a symbolic link failed.
    #[error("reading the link {path}")]
    ReadLink {
        /// The link.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Listing a directory failed.
    #[error("listing {path}")]
    ListDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A directory entry that should be a number is not.
    #[error("unexpected entry {name:?} in {path}")]
    BadEntry {
        /// The directory.
        path: PathBuf,
        /// The entry.
        name: String,
    },
    /// A file was read but its contents do not parse.
    #[error("parsing {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse failure.
        #[source]
        source: ParseError,
    },
}

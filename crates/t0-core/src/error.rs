use std::path::{Path, PathBuf};

/// The one exit-code contract every stage follows (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: done.
    Done = 0,
    /// 1: the gate said no (audit errors, certification failed, acceptance BLOCK).
    Gate = 1,
    /// 2: usage or configuration error.
    Usage = 2,
    /// 3: refused: upstream manifest or certificate missing, mismatched or stale; lock held.
    Refused = 3,
    /// 4: bad input data that could not be quarantined.
    BadInput = 4,
    /// 75 (sysexits' EX_TEMPFAIL): the machine ran out of a resource — memory under the limit,
    /// disk to spill to. Not a bug and not bad input: retry with more.
    Resource = 75,
    /// 70: an internal failure (I/O, storage engine). Anything outside the contract is a bug
    /// or an environment problem and is reported as such.
    Internal = 70,
    /// 99: nothing to do (Airflow's BashOperator skips on 99).
    NothingToDo = 99,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// What an integrity check found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The file or rows are not there (or cannot be opened at all).
    Missing,
    /// They are there and differ from what was recorded.
    Changed,
}

/// Errors shared by the stage libraries. Each variant knows its exit code, so binaries only
/// print and exit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("usage: {0}")]
    Usage(String),
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("refused: {0}")]
    Refused(String),
    /// A recorded output or stored file no longer matches its record (refused, exit 3); the
    /// damage says whether it is gone or different, for `verify` to report.
    #[error("refused: {message}")]
    Integrity { damage: Damage, message: String },
    #[error("resources exhausted: {0}")]
    Resource(String),
    #[error("gate: {0}")]
    Gate(String),
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("nothing to do: {0}")]
    NothingToDo(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {message}")]
    Internal { context: String, message: String },
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) | Error::Config { .. } => ExitCode::Usage,
            Error::Refused(_) | Error::Integrity { .. } => ExitCode::Refused,
            Error::Resource(_) => ExitCode::Resource,
            Error::Gate(_) => ExitCode::Gate,
            Error::BadInput(_) => ExitCode::BadInput,
            Error::NothingToDo(_) => ExitCode::NothingToDo,
            Error::Io { .. } | Error::Internal { .. } => ExitCode::Internal,
        }
    }

    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    pub fn internal(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Internal { context: context.into(), message: err.to_string() }
    }

    pub fn config(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Config { path: path.as_ref().to_path_buf(), message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a context string to foreign errors that have no better mapping.
pub trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::internal(context(), e))
    }
}

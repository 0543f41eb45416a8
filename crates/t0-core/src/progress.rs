/// How a library reports long work. Binaries plug in a progress bar; libraries and tests use
/// [`NoProgress`]. Implementations must be cheap to call per batch.
pub trait Progress: Send + Sync {
    /// A new phase begins; `total` is the amount of work when known.
    fn phase(&self, name: &str, total: Option<u64>);
    /// `n` more units of the current phase are done.
    fn advance(&self, n: u64);
    /// A one-line status message (also the human summary channel).
    fn note(&self, message: &str);
    /// The current phase is over.
    fn finish(&self);
}

/// A reporter that reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn note(&self, _: &str) {}
    fn finish(&self) {}
}

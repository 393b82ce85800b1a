//! The build log: what a build prints for people, kept whole for its result
//! and streamed, bounded, to whoever watches a running build.

/// How much of a running build's log is streamed; past it the stream stops
/// with a marker, and the whole (bounded) log comes with the build's result.
pub const STREAMED_LOG_CAP: u64 = 4 << 20;

/// Pieces of log the stream holds before it drops new ones; each piece is
/// at most a line or 64 KiB, so this bounds what a fast build can queue
/// while the stream's consumer is slower.
const SINK_CAPACITY: usize = 64;

/// Where a running build's log goes as it is written: a bounded channel that
/// never blocks the build. When it is full, new pieces are dropped and
/// counted, and the next piece that fits says how many bytes went missing;
/// past [`STREAMED_LOG_CAP`] the stream stops, with a marker.
#[derive(Clone)]
pub struct LogSink {
    tx: tokio::sync::mpsc::Sender<String>,
    state: std::sync::Arc<std::sync::Mutex<SinkState>>,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct SinkState {
    /// Bytes sent so far.
    sent: u64,
    /// Bytes dropped since the last marker.
    dropped: u64,
    /// Whether the stream reached its cap (and said so).
    capped: bool,
}

impl LogSink {
    /// A sink and the receiving end of its bounded channel.
    pub fn channel() -> (Self, tokio::sync::mpsc::Receiver<String>) {
        let (tx, rx) = tokio::sync::mpsc::channel(SINK_CAPACITY);
        (
            Self {
                tx,
                state: Default::default(),
            },
            rx,
        )
    }

    /// Queues `text`, or drops and counts it; never waits.
    pub fn send(&self, text: String) {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let len = text.len() as u64;
        if state.capped {
            return;
        }
        if state.sent + len > STREAMED_LOG_CAP {
            state.capped = true;
            let _ = self.tx.try_send(format!(
                "[... the streamed log stops here, at {} bytes; the build's result carries its log ...]\n",
                state.sent
            ));
            return;
        }
        let text = if state.dropped > 0 {
            format!(
                "[... {} bytes of log dropped: the stream could not keep up ...]\n{text}",
                state.dropped
            )
        } else {
            text
        };
        let n = text.len() as u64;
        match self.tx.try_send(text) {
            Ok(()) => {
                state.sent += n;
                state.dropped = 0;
            }
            Err(_) => state.dropped += len,
        }
    }
}

/// The build log: lines for people, mirrored to tracing and to the sink.
#[derive(Default)]
pub(crate) struct Log {
    text: String,
    sink: Option<LogSink>,
}

impl Log {
    pub(crate) fn new(sink: Option<LogSink>) -> Self {
        Self {
            text: String::new(),
            sink,
        }
    }

    /// Where the log is streamed, if anywhere.
    pub(crate) fn sink(&self) -> Option<&LogSink> {
        self.sink.as_ref()
    }

    /// The whole log so far, leaving it empty.
    pub(crate) fn take_text(&mut self) -> String {
        std::mem::take(&mut self.text)
    }

    pub(crate) fn into_text(self) -> String {
        self.text
    }

    pub(crate) fn line(&mut self, line: impl AsRef<str>) {
        let line = line.as_ref();
        tracing::info!("{line}");
        self.text.push_str(line);
        self.text.push('\n');
        if let Some(sink) = &self.sink {
            sink.send(format!("{line}\n"));
        }
    }

    /// A command's output, as is (not through tracing line by line); the
    /// sink had it as it was printed.
    pub(crate) fn output(&mut self, output: &str) {
        self.text.push_str(output);
        if !output.is_empty() && !output.ends_with('\n') {
            self.text.push('\n');
        }
    }

    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

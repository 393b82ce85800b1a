//! Pieces of an app's log on this host, read for `deploy logs` (a `Logs`
//! bus message asks; the grabber answers AppTracker with the piece).

use deploy::layout::HostLayout;

/// A piece of `app`'s log (`log/<app>.log`): from `offset`, or its last
/// `max_bytes`; from the start of the file when it was rotated since
/// `offset` (it is shorter now). Never more than `max_bytes` (itself
/// bounded by AppTracker).
pub(crate) fn read(
    layout: &HostLayout,
    cluster: &deploy::Cluster,
    app: &deploy::AppName,
    offset: Option<u64>,
    max_bytes: u64,
) -> deploy::LogAnswer {
    use std::io::{Read, Seek, SeekFrom};
    let max_bytes = max_bytes.min(deploy::MAX_LOG_READ);
    let path = layout.log_file(app);
    let fail = |error: String| deploy::LogAnswer {
        cluster: cluster.clone(),
        offset: 0,
        next_offset: 0,
        text: String::new(),
        truncated: false,
        error: Some(error),
    };
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fail(format!("`{app}` has no log on this host"));
        }
        Err(e) => return fail(format!("cannot read the log: {e}")),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let (start, mut truncated) = match offset {
        Some(o) if o <= len => (o, false),
        Some(_) => (0, true),
        None => (len.saturating_sub(max_bytes), len > max_bytes),
    };
    let mut buf = Vec::new();
    let read = f
        .seek(SeekFrom::Start(start))
        .and_then(|_| f.take(max_bytes).read_to_end(&mut buf));
    if let Err(e) = read {
        return fail(format!("cannot read the log: {e}"));
    }
    if start + (buf.len() as u64) < len {
        truncated = true;
    }
    deploy::LogAnswer {
        cluster: cluster.clone(),
        offset: start,
        next_offset: start + buf.len() as u64,
        text: String::from_utf8_lossy(&buf).into_owned(),
        truncated,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_piece_is_the_end_or_from_an_offset_and_knows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let layout = HostLayout::new(dir.path());
        let app = deploy::AppName::parse("hello").unwrap();
        let cluster = deploy::Cluster::parse("local").unwrap();
        let missing = read(&layout, &cluster, &app, None, 10);
        assert!(missing.error.unwrap().contains("no log"));
        std::fs::create_dir_all(layout.log_dir(&app)).unwrap();
        std::fs::write(layout.log_file(&app), "one\ntwo\nthree\n").unwrap();
        let end = read(&layout, &cluster, &app, None, 6);
        assert_eq!(
            (end.text.as_str(), end.offset, end.next_offset),
            ("three\n", 8, 14)
        );
        assert!(end.truncated, "the start is cut");
        let from = read(&layout, &cluster, &app, Some(4), 100);
        assert_eq!(
            (from.text.as_str(), from.truncated),
            ("two\nthree\n", false)
        );
        // Rotated: the file is shorter than the offset asked for.
        std::fs::write(layout.log_file(&app), "new\n").unwrap();
        let rotated = read(&layout, &cluster, &app, Some(14), 100);
        assert_eq!(
            (rotated.text.as_str(), rotated.offset, rotated.truncated),
            ("new\n", 0, true)
        );
    }
}

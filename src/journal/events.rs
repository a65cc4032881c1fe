//! events: `events_file`, one JSON object per line for each probe, ban and
//! unban, for SIEM shippers. The loop hands each line to a thread (a
//! bounded queue: when the thread falls behind, lines are dropped and
//! counted, never waited for); the thread appends them, and reopens the
//! file when it was rotated (moved or removed: the path no longer names the
//! file it holds open), creating it as `files::open_private` does.
//!
//! Knows nothing of what the events mean: the caller writes the JSON.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// Lines waiting for the thread, at most.
pub const QUEUE: usize = 4096;

pub struct EventsFile {
    tx: SyncSender<String>,
    /// Lines dropped because the queue was full.
    pub dropped: u64,
}

impl EventsFile {
    /// Starts the writer thread for `path` (after the privilege drop: the
    /// thread inherits the dropped capabilities).
    pub fn start(path: PathBuf) -> std::io::Result<EventsFile> {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || writer(&path, rx))?;
        Ok(EventsFile { tx, dropped: 0 })
    }

    /// Queues one line (without its newline); never blocks.
    pub fn emit(&mut self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped += 1,
        }
    }
}

/// The open file and what it is (device, inode).
struct Open {
    file: std::fs::File,
    id: (u64, u64),
}

fn open(path: &Path) -> std::io::Result<Open> {
    let how = crate::files::Private {
        append: true,
        mode: 0o640,
        make_dir: false,
    };
    let file = crate::files::open_private(path, &how)?;
    let m = file.metadata()?;
    Ok(Open {
        file,
        id: (m.dev(), m.ino()),
    })
}

fn writer(path: &Path, rx: Receiver<String>) {
    let mut current: Option<Open> = None;
    let mut failed_reported = false;
    while let Ok(first) = rx.recv() {
        let mut batch = first;
        batch.push('\n');
        while let Ok(more) = rx.try_recv() {
            batch.push_str(&more);
            batch.push('\n');
            if batch.len() > 1 << 20 {
                break;
            }
        }
        // Rotated (moved away, removed, replaced): open the path again.
        let same = current.as_ref().is_some_and(|o| {
            std::fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == o.id)
        });
        if !same {
            current = match open(path) {
                Ok(o) => {
                    failed_reported = false;
                    Some(o)
                }
                Err(e) => {
                    if !failed_reported {
                        log_error!(
                            "adminalert: ERROR: events_file {}: {e}; events are not written until it can be opened",
                            path.display()
                        );
                        failed_reported = true;
                    }
                    None
                }
            };
        }
        if let Some(o) = current.as_mut() {
            if let Err(e) = o.file.write_all(batch.as_bytes()) {
                log_error!("adminalert: ERROR: events_file {}: {e}", path.display());
                current = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_and_a_rotated_file_is_reopened() {
        let dir = std::env::temp_dir().join(format!("nftsentry-events-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.json");
        let mut e = EventsFile::start(path.clone()).unwrap();
        e.emit("{\"a\":1}".into());
        let wait = |p: &Path, want: &str| {
            for _ in 0..200 {
                if std::fs::read_to_string(p).is_ok_and(|t| t.contains(want)) {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            false
        };
        assert!(wait(&path, "{\"a\":1}\n"));
        std::fs::rename(&path, dir.join("events.json.1")).unwrap();
        e.emit("{\"b\":2}".into());
        assert!(wait(&path, "{\"b\":2}\n"));
        let old = std::fs::read_to_string(dir.join("events.json.1")).unwrap();
        assert_eq!(old, "{\"a\":1}\n");
        assert_eq!(e.dropped, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

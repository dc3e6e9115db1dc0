//! `read_user_file` on regular files, folders, devices and FIFOs: bounded in size and time.

use std::path::Path;
use std::time::{Duration, Instant};

use impchat_input::source::{read_user_file, SourceError};

const CAP: u64 = 1024;
const TIMEOUT: Duration = Duration::from_millis(300);

#[test]
fn a_regular_file_is_read_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.bin");
    std::fs::write(&path, b"hello").expect("write");
    assert_eq!(
        read_user_file(&path, CAP, TIMEOUT).expect("reads"),
        b"hello"
    );
}

#[test]
fn a_file_over_the_cap_is_refused_with_the_cap_in_the_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.bin");
    std::fs::write(&path, vec![7u8; CAP as usize + 1]).expect("write");
    let err = read_user_file(&path, CAP, TIMEOUT).expect_err("too large");
    assert!(matches!(err, SourceError::TooLarge { cap: CAP }), "{err:?}");
    assert!(err.to_string().contains("1024 bytes"), "{err}");

    std::fs::write(&path, vec![7u8; CAP as usize]).expect("write");
    assert_eq!(
        read_user_file(&path, CAP, TIMEOUT)
            .expect("at the cap")
            .len(),
        1024
    );
}

#[test]
fn missing_files_and_folders_say_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = read_user_file(&dir.path().join("nope"), CAP, TIMEOUT).expect_err("missing");
    assert!(matches!(err, SourceError::NotFound), "{err:?}");
    let err = read_user_file(dir.path(), CAP, TIMEOUT).expect_err("folder");
    assert!(matches!(err, SourceError::Directory), "{err:?}");
}

#[cfg(unix)]
mod unix {
    use super::*;
    use std::io::Write;
    use std::process::Command;

    fn mkfifo(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("fifo");
        let status = Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
        path
    }

    #[test]
    fn endless_devices_are_refused_without_reading() {
        for device in ["/dev/zero", "/dev/urandom"] {
            let err = read_user_file(Path::new(device), CAP, TIMEOUT).expect_err(device);
            assert!(
                matches!(
                    err,
                    SourceError::NotAFile {
                        kind: "a character device"
                    }
                ),
                "{device}: {err:?}"
            );
        }
    }

    #[test]
    fn a_proc_file_reporting_length_zero_is_still_capped() {
        // /proc/self/maps says it is 0 bytes long and holds several KiB.
        let err = read_user_file(Path::new("/proc/self/maps"), 16, TIMEOUT).expect_err("capped");
        assert!(matches!(err, SourceError::TooLarge { cap: 16 }), "{err:?}");
    }

    #[test]
    fn a_fifo_nobody_writes_to_times_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = mkfifo(dir.path());
        let started = Instant::now();
        let err = read_user_file(&fifo, CAP, TIMEOUT).expect_err("times out");
        assert!(matches!(err, SourceError::TimedOut { .. }), "{err:?}");
        // Bounded, not forever; generous so a loaded machine does not fail it.
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn a_fifo_writer_that_never_finishes_times_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = mkfifo(dir.path());
        // Opened read-write, a FIFO counts as having a writer without waiting for a reader;
        // it stays open (no end of file) until the reader has given up.
        let mut writer = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .expect("open the FIFO");
        writer.write_all(b"partial").expect("write");
        let err = read_user_file(&fifo, CAP, TIMEOUT).expect_err("times out");
        assert!(matches!(err, SourceError::TimedOut { .. }), "{err:?}");
        assert!(err.to_string().contains("0.3 s"), "{err}");
        drop(writer);
    }

    #[test]
    fn a_fifo_whose_writer_finishes_is_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = mkfifo(dir.path());
        let writer_path = fifo.clone();
        let writer = std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(writer_path)
                .expect("open for writing");
            file.write_all(b"all of it").expect("write");
        });
        let bytes = read_user_file(&fifo, CAP, Duration::from_secs(20)).expect("reads");
        assert_eq!(bytes, b"all of it");
        writer.join().expect("writer");
    }

    #[test]
    fn an_endless_fifo_stops_at_the_cap() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = mkfifo(dir.path());
        let writer_path = fifo.clone();
        let writer = std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(writer_path)
                .expect("open for writing");
            // Writes until the reader closes its end (EPIPE).
            while file.write_all(&[0u8; 4096]).is_ok() {}
        });
        let err = read_user_file(&fifo, CAP, Duration::from_secs(20)).expect_err("capped");
        assert!(matches!(err, SourceError::TooLarge { cap: CAP }), "{err:?}");
        writer.join().expect("writer");
    }
}

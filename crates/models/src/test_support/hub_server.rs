//! A small Hugging Face Hub look-alike on 127.0.0.1 for download tests.
//!
//! `HEAD|GET /{owner}/{name}/resolve/{rev}/{file}`: LFS files answer 302 to `/cdn/{sha256}`
//! with `X-Linked-Etag` (sha256) and `X-Linked-Size`; small files answer 200 with a git-SHA-1
//! `ETag`, like the real hub. `/cdn/...` serves bytes with Range support (206/Content-Range,
//! 416). Faults per file make it drop connections, corrupt bytes, fail, stall or go slowly.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use sha1::Sha1;
use sha2::{Digest, Sha256};

pub const REPO: &str = "MILVLG/tiny-imp";
pub const REVISION: &str = "main";
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const CHUNK: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection after sending this many body bytes (for `times` requests).
    DropAfter { bytes: usize, times: u32 },
    /// Serve the file with one byte flipped (every time).
    FlipByte { offset: usize },
    /// Answer this status on the byte download (for `times` requests).
    Status { code: u16, times: u32 },
    /// Answer this status on the resolve request (every time).
    ResolveStatus { code: u16 },
    /// Answer 416 to a Range request (for `times` requests).
    RangeNotSatisfiable { times: u32 },
    /// Sleep this long after every chunk of the body.
    Slow { delay_ms: u64 },
    /// After this many body bytes, go silent for `ms` then close (for `times` requests).
    Stall { after: usize, ms: u64, times: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    pub path: String,
    /// File name the request was about (resolve or CDN).
    pub file: String,
    pub range: Option<String>,
    pub status: u16,
}

struct Served {
    bytes: Vec<u8>,
    lfs: bool,
    sha256: String,
    git_sha1: String,
}

#[derive(Default)]
struct State {
    repo: String,
    files: HashMap<String, Served>,
    faults: HashMap<String, Fault>,
    log: Vec<Logged>,
}

pub struct HubServer {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl HubServer {
    /// Serves `files` for `REPO` at `REVISION`; `.safetensors` files are served as LFS.
    pub fn start(files: &std::collections::BTreeMap<String, Vec<u8>>) -> HubServer {
        Self::start_repo(REPO, files)
    }

    /// Serves `files` for `repo` (`owner/name`) at `REVISION`.
    pub fn start_repo(
        repo: &str,
        files: &std::collections::BTreeMap<String, Vec<u8>>,
    ) -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("nonblocking: {e}"));
        let endpoint = format!(
            "http://{}",
            listener
                .local_addr()
                .unwrap_or_else(|e| panic!("addr: {e}"))
        );
        let mut state = State {
            repo: repo.to_string(),
            ..State::default()
        };
        for (name, bytes) in files {
            state.files.insert(
                name.clone(),
                Served {
                    lfs: name.ends_with(".safetensors"),
                    sha256: hex::encode(Sha256::digest(bytes)),
                    git_sha1: git_sha1(bytes),
                    bytes: bytes.clone(),
                },
            );
        }
        let state = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let accept_thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            thread::spawn(move || accept_loop(listener, state, stop))
        };
        HubServer {
            endpoint,
            state,
            stop,
            accept_thread: Some(accept_thread),
        }
    }

    pub fn set_fault(&self, file: &str, fault: Fault) {
        lock(&self.state).faults.insert(file.to_string(), fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    pub fn log(&self) -> Vec<Logged> {
        lock(&self.state).log.clone()
    }

    /// Byte downloads (CDN or direct GET of a small file) of `file`.
    pub fn downloads_of(&self, file: &str) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|l| l.method == "GET" && l.file == file)
            .collect()
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept_thread.take() {
            let _ = handle.join();
        }
    }
}

fn git_sha1(bytes: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", bytes.len()).as_bytes());
    hasher.update(bytes);
    hex::encode(hasher.finalize())
}

fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let state = Arc::clone(&state);
                thread::spawn(move || {
                    let _ = handle(stream, &state);
                });
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

struct Request {
    method: String,
    path: String,
    range: Option<String>,
}

fn read_request(stream: &TcpStream) -> std::io::Result<Option<Request>> {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    if reader.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut range = None;
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    Ok(Some(Request {
        method,
        path,
        range,
    }))
}

fn handle(mut stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let Some(request) = read_request(&stream)? else {
        return Ok(());
    };
    let resolve_prefix = format!("/{}/resolve/{REVISION}/", lock(state).repo);
    if let Some(file) = request.path.strip_prefix(&resolve_prefix) {
        resolve(&mut stream, state, &request, file)
    } else if let Some(sha) = request.path.strip_prefix("/cdn/") {
        let file = {
            let state = lock(state);
            state
                .files
                .iter()
                .find(|(_, served)| served.sha256 == sha)
                .map(|(name, _)| name.clone())
        };
        match file {
            Some(file) => serve_bytes(&mut stream, state, &request, &file),
            None => respond(&mut stream, state, &request, "", 404, &[], b""),
        }
    } else {
        respond(
            &mut stream,
            state,
            &request,
            "",
            404,
            &[],
            b"Repository not found",
        )
    }
}

fn resolve(
    stream: &mut TcpStream,
    state: &Mutex<State>,
    request: &Request,
    file: &str,
) -> std::io::Result<()> {
    let (status, headers, lfs) = {
        let state = lock(state);
        if let Some(Fault::ResolveStatus { code }) = state.faults.get(file) {
            (*code, Vec::new(), false)
        } else {
            match state.files.get(file) {
                None => (404, Vec::new(), false),
                Some(served) if served.lfs => (
                    302,
                    vec![
                        ("Location".to_string(), format!("/cdn/{}", served.sha256)),
                        (
                            "X-Linked-Etag".to_string(),
                            format!("\"{}\"", served.sha256),
                        ),
                        ("X-Linked-Size".to_string(), served.bytes.len().to_string()),
                        ("X-Repo-Commit".to_string(), COMMIT.to_string()),
                        ("ETag".to_string(), format!("\"{}\"", served.git_sha1)),
                    ],
                    true,
                ),
                Some(served) => (
                    200,
                    vec![
                        ("ETag".to_string(), format!("\"{}\"", served.git_sha1)),
                        ("X-Repo-Commit".to_string(), COMMIT.to_string()),
                    ],
                    false,
                ),
            }
        }
    };
    if status == 200 && !lfs {
        // Small files come straight from the resolve URL, like on the hub.
        return serve_bytes(stream, state, request, file);
    }
    let refs: Vec<(&str, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    respond(stream, state, request, file, status, &refs, b"")
}

/// Decrements a fault's remaining count; returns whether it applies to this request.
fn take_fault(state: &mut State, file: &str) -> Option<Fault> {
    let fault = *state.faults.get(file)?;
    let remaining = match fault {
        Fault::DropAfter { times, .. }
        | Fault::Status { times, .. }
        | Fault::RangeNotSatisfiable { times }
        | Fault::Stall { times, .. } => Some(times),
        _ => None,
    };
    match remaining {
        Some(0) => None,
        Some(n) => {
            let next = match fault {
                Fault::DropAfter { bytes, .. } => Fault::DropAfter {
                    bytes,
                    times: n - 1,
                },
                Fault::Status { code, .. } => Fault::Status { code, times: n - 1 },
                Fault::RangeNotSatisfiable { .. } => Fault::RangeNotSatisfiable { times: n - 1 },
                Fault::Stall { after, ms, .. } => Fault::Stall {
                    after,
                    ms,
                    times: n - 1,
                },
                other => other,
            };
            state.faults.insert(file.to_string(), next);
            Some(fault)
        }
        None => Some(fault),
    }
}

fn serve_bytes(
    stream: &mut TcpStream,
    state: &Mutex<State>,
    request: &Request,
    file: &str,
) -> std::io::Result<()> {
    let (mut body, sha, git, fault) = {
        let mut guard = lock(state);
        let Some(served) = guard.files.get(file) else {
            drop(guard);
            return respond(stream, state, request, file, 404, &[], b"");
        };
        let (body, sha, git) = (
            served.bytes.clone(),
            served.sha256.clone(),
            served.git_sha1.clone(),
        );
        let applies = match guard.faults.get(file) {
            _ if request.method == "HEAD" => false,
            Some(Fault::RangeNotSatisfiable { .. }) if request.range.is_none() => false,
            _ => true,
        };
        let fault = if applies {
            take_fault(&mut guard, file)
        } else {
            None
        };
        (body, sha, git, fault)
    };
    let total = body.len();
    if let Some(Fault::FlipByte { offset }) = fault {
        body[offset] ^= 0xFF;
    }
    if let Some(Fault::Status { code, .. }) = fault {
        return respond(
            stream,
            state,
            request,
            file,
            code,
            &[],
            b"simulated failure",
        );
    }
    if let Some(Fault::RangeNotSatisfiable { .. }) = fault {
        let headers = [("Content-Range", format!("bytes */{total}"))];
        return respond(stream, state, request, file, 416, &headers, b"");
    }
    let etag = if file.ends_with(".safetensors") {
        sha
    } else {
        git
    };
    let start = request
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse::<usize>().ok());
    let (status, slice_start) = match start {
        Some(s) if s >= total => {
            let headers = [("Content-Range", format!("bytes */{total}"))];
            return respond(stream, state, request, file, 416, &headers, b"");
        }
        Some(s) => (206, s),
        None => (200, 0),
    };
    let mut headers = vec![
        ("ETag", format!("\"{etag}\"")),
        ("Accept-Ranges", "bytes".to_string()),
    ];
    if status == 206 {
        headers.push((
            "Content-Range",
            format!("bytes {slice_start}-{}/{total}", total - 1),
        ));
    }
    let body = &body[slice_start..];
    log(state, request, file, status);
    write_head(stream, status, &headers, body.len())?;
    if request.method == "HEAD" {
        return Ok(());
    }
    let mut sent = 0usize;
    for chunk in body.chunks(CHUNK) {
        let chunk = match fault {
            Some(Fault::DropAfter { bytes, .. }) | Some(Fault::Stall { after: bytes, .. })
                if sent + chunk.len() > bytes =>
            {
                &chunk[..bytes.saturating_sub(sent)]
            }
            _ => chunk,
        };
        stream.write_all(chunk)?;
        stream.flush()?;
        sent += chunk.len();
        match fault {
            Some(Fault::DropAfter { bytes, .. }) if sent >= bytes => return Ok(()),
            Some(Fault::Stall { after, ms, .. }) if sent >= after => {
                thread::sleep(Duration::from_millis(ms));
                return Ok(());
            }
            Some(Fault::Slow { delay_ms }) => thread::sleep(Duration::from_millis(delay_ms)),
            _ => {}
        }
    }
    Ok(())
}

fn log(state: &Mutex<State>, request: &Request, file: &str, status: u16) {
    lock(state).log.push(Logged {
        method: request.method.clone(),
        path: request.path.clone(),
        file: file.to_string(),
        range: request.range.clone(),
        status,
    });
}

fn write_head(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    len: usize,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Status",
    };
    let mut head =
        format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {len}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

fn respond(
    stream: &mut TcpStream,
    state: &Mutex<State>,
    request: &Request,
    file: &str,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    log(state, request, file, status);
    write_head(stream, status, headers, body.len())?;
    if request.method != "HEAD" {
        stream.write_all(body)?;
    }
    stream.flush()
}

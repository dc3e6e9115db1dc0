//! `impchat serve` against hostile or careless clients: web pages (simple cross-origin
//! requests, DNS rebinding), slow-loris connections, lying or huge bodies, image bombs, a
//! full queue, clients that leave, and a shutdown in the middle of an answer. Each test runs
//! the real binary on 127.0.0.1 with the tiny fixture model and speaks raw HTTP/1.1 (or ureq
//! where a real client is the point).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin_cmd;
use serde_json::{json, Value};

const LONG_STORY: &str = "Tell me a very long story.";

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/imp-v1.5-3b-phi2")
}

/// A running `impchat serve --port 0`, its stderr (the request log) collected line by line.
struct Server {
    child: Child,
    address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    model_id: String,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_impchat"))
            .arg("serve")
            .arg("--model")
            .arg(fixture_model())
            .args(["--port", "0"])
            .args(extra)
            .env_remove("IMPCHAT_API_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("impchat starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready, address) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("serving on http://").nth(1) {
                    let _ = ready.send(rest.split('/').next().unwrap_or_default().to_owned());
                }
                lines.lock().expect("log lock").push(line);
            }
        });
        let address = match address.recv_timeout(Duration::from_secs(120)) {
            Ok(address) => address.parse().expect("a socket address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "impchat serve did not start: {:?}",
                    log.lock().expect("log lock")
                );
            }
        };
        let mut server = Self {
            child,
            address,
            log,
            model_id: String::new(),
        };
        let models = get_models(&server, &["Authorization: Bearer sk-local"]);
        server.model_id = models.json()["data"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no model id: {models:?}"))
            .to_owned();
        server
    }

    /// A chat completion request for the served model.
    fn chat_body(&self, content: Value, max_tokens: u32) -> Vec<u8> {
        json!({
            "model": self.model_id,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": content}],
        })
        .to_string()
        .into_bytes()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits for a log line containing all of `parts` and returns it.
    fn wait_for_log(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(line) = self
                .log_lines()
                .into_iter()
                .find(|line| parts.iter().all(|part| line.contains(part)))
            {
                return line;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("no log line with {parts:?}; log: {:#?}", self.log_lines());
    }

    /// SIGTERM, as a service manager stops the server.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("the server did not stop; log: {:#?}", self.log_lines());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One response read off the wire (a `Content-Length` body; errors always have one).
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!("not JSON ({err}): {}", String::from_utf8_lossy(&self.body))
        })
    }

    /// The OpenAI error's `code`, after checking the error's shape.
    fn error_code(&self) -> String {
        let json = self.json();
        let error = json["error"].as_object().expect("an OpenAI error object");
        for field in ["message", "type", "param", "code"] {
            assert!(error.contains_key(field), "{field} missing: {json}");
        }
        json["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut buffer).expect("the server answers");
        assert!(n > 0, "connection closed before a response: {raw:?}");
        raw.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut body = raw[head_end + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let mut reply = Reply {
        status,
        head,
        body: Vec::new(),
    };
    let length: usize = reply
        .header("content-length")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {}", reply.head));
    while body.len() < length {
        let n = stream.read(&mut buffer).expect("the body arrives");
        assert!(n > 0, "connection closed inside the body");
        body.extend_from_slice(&buffer[..n]);
    }
    reply.body = body;
    reply
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.address).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    stream
}

/// Sends `head` (request line and headers, without the blank line) and `body`.
fn send(server: &Server, head: &str, body: &[u8]) -> Reply {
    let mut stream = connect(server);
    let request = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("sends");
    stream.write_all(body).expect("sends the body");
    read_reply(&mut stream)
}

/// A chat completion POST with `headers` (each "Name: value"), Host 127.0.0.1.
fn post_chat(server: &Server, headers: &[&str], body: &[u8]) -> Reply {
    let mut head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}",
        server.address
    );
    for header in headers {
        head.push_str("\r\n");
        head.push_str(header);
    }
    send(server, &head, body)
}

/// `post_chat` from another thread, where only the address is at hand.
fn post_chat_to(address: SocketAddr, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(address).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("read timeout");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\n{JSON}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("sends");
    stream.write_all(body).expect("sends the body");
    read_reply(&mut stream)
}

fn get_models(server: &Server, headers: &[&str]) -> Reply {
    let mut head = String::from("GET /v1/models HTTP/1.1");
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        head.push_str(&format!("\r\nHost: {}", server.address));
    }
    for header in headers {
        head.push_str("\r\n");
        head.push_str(header);
    }
    send(server, &head, b"")
}

const JSON: &str = "Content-Type: application/json";

// --- web pages ------------------------------------------------------------------------------

#[test]
fn form_and_text_plain_posts_are_415_and_run_nothing() {
    let server = Server::start(&[]);
    let body = server.chat_body(json!("hi"), 2);
    for content_type in [
        Some("Content-Type: text/plain"),
        Some("Content-Type: application/x-www-form-urlencoded"),
        Some("Content-Type: multipart/form-data; boundary=x"),
        None,
    ] {
        let headers: Vec<&str> = content_type.into_iter().collect();
        let reply = post_chat(&server, &headers, &body);
        assert_eq!(reply.status, 415, "{content_type:?}: {reply:?}");
        assert_eq!(reply.error_code(), "unsupported_media_type");
        assert!(
            reply.message().contains("application/json"),
            "{}",
            reply.message()
        );
    }
    assert!(
        !server
            .log_lines()
            .iter()
            .any(|line| line.contains("answering")),
        "a refused request reached the model: {:#?}",
        server.log_lines()
    );
    let reply = post_chat(
        &server,
        &["Content-Type: application/json; charset=utf-8"],
        &body,
    );
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[test]
fn requests_from_a_page_of_another_origin_are_403() {
    let server = Server::start(&[]);
    let body = server.chat_body(json!("hi"), 2);
    let reply = post_chat(&server, &[JSON, "Origin: http://evil.example"], &body);
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(reply.error_code(), "origin_not_allowed");
    assert!(
        reply
            .message()
            .contains("--cors-origin http://evil.example"),
        "{}",
        reply.message()
    );
    assert_eq!(
        get_models(&server, &["Origin: http://evil.example"]).status,
        403
    );
    // No Origin (curl, SDKs): fine.
    assert_eq!(post_chat(&server, &[JSON], &body).status, 200);

    let with_cors = Server::start(&["--cors-origin", "http://localhost:3000"]);
    let allowed = get_models(&with_cors, &["Origin: http://localhost:3000"]);
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(
        allowed.header("access-control-allow-origin").as_deref(),
        Some("http://localhost:3000")
    );
    assert_eq!(
        get_models(&with_cors, &["Origin: http://evil.example"]).status,
        403
    );
}

#[test]
fn a_host_header_of_another_name_is_refused_against_dns_rebinding() {
    let server = Server::start(&["--allow-host", "box.local"]);
    let reply = get_models(&server, &["Host: evil.example:8080"]);
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(reply.error_code(), "host_not_allowed");
    let message = reply.message();
    assert!(message.contains("'evil.example:8080'"), "{message}");
    assert!(message.contains("--allow-host evil.example "), "{message}");

    let body = server.chat_body(json!("hi"), 2);
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: rebound.example\r\nContent-Type: application/json";
    assert_eq!(send(&server, head, &body).status, 403);

    for host in [
        "localhost",
        "localhost:1234",
        "127.0.0.1:80",
        "[::1]:8080",
        "box.local:8080",
    ] {
        let reply = get_models(&server, &[&format!("Host: {host}")]);
        assert_eq!(reply.status, 200, "{host}: {reply:?}");
    }
}

// --- slow and lying clients ----------------------------------------------------------------

/// Trickles `first`, then `drip` every 200 ms, until the server closes the connection;
/// returns what the server sent. Panics if it is still open after 30 s.
fn trickle_until_closed(address: SocketAddr, first: &[u8], drip: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    if stream.write_all(first).is_err() {
        return received;
    }
    while started.elapsed() < Duration::from_secs(30) {
        match stream.read(&mut buffer) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return received,
        }
        if stream.write_all(drip).is_err() {
            return received;
        }
    }
    panic!("the server kept a trickling connection open for 30 s");
}

#[test]
fn connections_trickling_their_headers_are_closed() {
    let server = Server::start(&[]);
    let address = server.address;
    let lorises: Vec<_> = (0..13)
        .map(|_| {
            thread::spawn(move || {
                trickle_until_closed(
                    address,
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                    b"X-a: b\r\n",
                )
            })
        })
        .collect();
    // The slow connections do not keep others out.
    assert_eq!(get_models(&server, &[]).status, 200);
    for loris in lorises {
        loris
            .join()
            .expect("the server closed the trickling connection");
    }
}

#[test]
fn a_trickling_body_is_cut_off_with_408() {
    let server = Server::start(&[]);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100000\r\n\r\n{{",
        server.address
    );
    let received = trickle_until_closed(server.address, head.as_bytes(), b" ");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
}

#[test]
fn a_declared_length_over_the_cap_is_413_before_the_body_is_sent() {
    let server = Server::start(&[]);
    let mut stream = connect(&server);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 1073741824\r\n\r\n",
        server.address
    );
    stream
        .write_all(head.as_bytes())
        .expect("sends the headers");
    // Not a byte of the body: the answer must come anyway.
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(reply.error_code(), "request_too_large");
    assert!(
        reply.message().contains("1073741824 bytes"),
        "{}",
        reply.message()
    );
}

#[test]
fn a_body_that_grows_past_the_cap_is_413() {
    let server = Server::start(&[]);
    let mut stream = connect(&server);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        server.address
    );
    stream
        .write_all(head.as_bytes())
        .expect("sends the headers");
    let mut writer = stream.try_clone().expect("clone");
    // 33 MiB in 1 MiB chunks; the server may close before the end, so errors are expected.
    let sender = thread::spawn(move || {
        let chunk = vec![b' '; 1024 * 1024];
        for _ in 0..33 {
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(&chunk);
            framed.extend_from_slice(b"\r\n");
            if writer.write_all(&framed).is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(reply.error_code(), "request_too_large");
    drop(stream);
    let _ = sender.join();
}

#[test]
fn malformed_json_is_400() {
    let server = Server::start(&[]);
    let reply = post_chat(&server, &[JSON], br#"{"model": "x", "messages": ["#);
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    assert!(reply
        .message()
        .contains("not a valid chat completion request"));
}

/// A real PNG that claims 60000×60000 pixels (10 GB decoded) in 67 bytes.
fn png_bomb() -> Vec<u8> {
    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        let length = u32::try_from(data.len()).expect("small chunk");
        let mut chunk = length.to_be_bytes().to_vec();
        chunk.extend_from_slice(kind);
        chunk.extend_from_slice(data);
        chunk.extend_from_slice(&crc.finalize().to_be_bytes());
        chunk
    }
    let mut header = Vec::new();
    header.extend_from_slice(&60_000u32.to_be_bytes());
    header.extend_from_slice(&60_000u32.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let idat = [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]; // empty zlib stream
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &header));
    png.extend(chunk(b"IDAT", &idat));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn an_image_bomb_in_a_data_url_is_refused() {
    use base64::Engine as _;
    let server = Server::start(&[]);
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png_bomb())
    );
    let content = json!([
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]);
    let reply = post_chat(&server, &[JSON], &server.chat_body(content, 2));
    assert_eq!(reply.status, 400, "{reply:?}");
    let message = reply.message();
    assert!(message.starts_with("image 1:"), "{message}");
    assert!(message.contains("60000"), "{message}");
    // Still serving.
    assert_eq!(get_models(&server, &[]).status, 200);
}

// --- keys -----------------------------------------------------------------------------------

#[test]
fn an_empty_api_key_is_refused_at_start() {
    let output = cargo_bin_cmd!("impchat")
        .args(["serve", "--model"])
        .arg(fixture_model())
        .args(["--port", "0", "--api-key", ""])
        .env_remove("IMPCHAT_API_KEY")
        .timeout(Duration::from_secs(60))
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the API key is empty"), "{stderr}");
    assert!(stderr.contains("leave out --api-key"), "{stderr}");

    let output = cargo_bin_cmd!("impchat")
        .args(["serve", "--model"])
        .arg(fixture_model())
        .args(["--port", "0"])
        .env("IMPCHAT_API_KEY", "")
        .timeout(Duration::from_secs(60))
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("impchat: IMPCHAT_API_KEY is set, but the API key is empty"),
        "{stderr}"
    );
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let server = Server::start(&["--api-key", "sk-local"]);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let reply = get_models(&server, &[&format!("Authorization: {scheme} sk-local")]);
        assert_eq!(reply.status, 200, "{scheme}: {reply:?}");
    }
    let wrong = get_models(&server, &["Authorization: bearer sk-other"]);
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.error_code(), "invalid_api_key");
}

// --- the queue and the model thread --------------------------------------------------------

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// Starts a streamed answer of up to 3000 tokens and returns its reader once the first
/// token has arrived (so the model thread is busy with it), and the completion id.
fn start_long_stream(server: &Server) -> (Box<dyn BufRead + Send>, String) {
    let body = json!({
        "model": server.model_id, "stream": true, "max_tokens": 3000,
        "messages": [{"role": "user", "content": LONG_STORY}],
    });
    let response = agent()
        .post(server.url("/v1/chat/completions"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("the stream starts");
    assert_eq!(response.status().as_u16(), 200);
    let mut reader: Box<dyn BufRead + Send> =
        Box::new(BufReader::new(response.into_body().into_reader()));
    while let Some(event) = next_event(&mut reader) {
        let content = &event["choices"][0]["delta"]["content"];
        if content.as_str().is_some_and(|text| !text.is_empty()) {
            let id = event["id"].as_str().unwrap_or_default().to_owned();
            return (reader, id);
        }
    }
    panic!("the stream ended before its first token");
}

/// The next SSE `data:` payload as JSON (`[DONE]` as the string "[DONE]"), None at the end.
fn next_event(reader: &mut impl BufRead) -> Option<Value> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            return Some(serde_json::from_str(data).unwrap_or_else(|_| Value::from(data)));
        }
    }
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let server = Server::start(&["--max-queue", "1"]);
    let (stream, _) = start_long_stream(&server);
    // The model thread is busy: one request fits the queue, the rest are refused.
    let (replies, received) = std::sync::mpsc::channel();
    let address = server.address;
    for _ in 0..6 {
        let replies = replies.clone();
        let body = server.chat_body(json!("hi"), 2);
        thread::spawn(move || {
            let _ = replies.send(post_chat_to(address, &body));
        });
    }
    let mut refused = Vec::new();
    for _ in 0..5 {
        let reply = received
            .recv_timeout(Duration::from_secs(60))
            .expect("five requests are answered while the model is busy");
        assert_eq!(reply.status, 429, "{reply:?}");
        refused.push(reply);
    }
    assert_eq!(refused[0].error_code(), "queue_full");
    assert_eq!(refused[0].header("retry-after").as_deref(), Some("1"));
    // Leaving the stream cancels its generation and lets the queued request through.
    drop(stream);
    let queued = received
        .recv_timeout(Duration::from_secs(60))
        .expect("the queued request is answered");
    assert_eq!(queued.status, 200, "{queued:?}");
}

#[test]
fn a_client_that_leaves_mid_stream_cancels_its_generation() {
    let server = Server::start(&[]);
    let (stream, id) = start_long_stream(&server);
    drop(stream);
    let line = server.wait_for_log(&[&id, "cancelled (client went away)"]);
    let generated: usize = line
        .split(", ")
        .find_map(|part| part.strip_suffix(" generated"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no generated count in {line}"));
    assert!(generated < 3000, "{line}");
    // And the model thread is free for the next request.
    assert_eq!(
        post_chat(&server, &[JSON], &server.chat_body(json!("hi"), 2)).status,
        200
    );
}

// --- shutdown -------------------------------------------------------------------------------

#[test]
fn sigterm_mid_stream_ends_it_with_an_error_not_finish_reason_stop() {
    let mut server = Server::start(&[]);
    let (mut stream, _) = start_long_stream(&server);
    server.terminate();
    let mut rest = Vec::new();
    while let Some(event) = next_event(&mut stream) {
        rest.push(event);
    }
    for event in &rest {
        assert_ne!(
            event["choices"][0]["finish_reason"], "stop",
            "an interrupted answer passed off as complete: {rest:#?}"
        );
    }
    let last = rest.last().expect("the stream says how it ended");
    assert_eq!(last["error"]["code"], "shutting_down", "{rest:#?}");
    assert!(
        last["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("incomplete")),
        "{last}"
    );
    assert!(server.wait_for_exit().success());
    server.wait_for_log(&["cancelled (server shutting down)"]);
}

#[test]
fn sigterm_during_a_plain_request_answers_503_not_a_complete_answer() {
    let mut server = Server::start(&[]);
    let address = server.address;
    let body = server.chat_body(json!(LONG_STORY), 3000);
    let request = thread::spawn(move || post_chat_to(address, &body));
    server.wait_for_log(&["answering"]);
    server.terminate();
    let reply = request.join().expect("a reply");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.error_code(), "shutting_down");
    assert!(server.wait_for_exit().success());
}

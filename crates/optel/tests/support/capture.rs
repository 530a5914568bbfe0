//! A loopback HTTP server that answers every request `200 {}` and keeps the JSON bodies it
//! received (gzip decoded): what the SDK really sent over a socket. Shared by the crate's unit
//! tests (`store`) and its integration tests (`consent_recheck`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test code fails loudly

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The running server; it lives as long as the test process.
#[derive(Debug, Clone)]
pub struct Capture {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Capture {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &kept);
            }
        });
        Self { url, bodies }
    }

    /// Every JSON body received, in order.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// The names of every event received, in order.
    pub fn event_names(&self) -> Vec<String> {
        self.bodies()
            .iter()
            .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["name"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Reads one request, keeps its body, then answers 200 and closes the connection (kept
/// before answering, so a client that saw the answer finds its body here).
fn serve(stream: TcpStream, kept: &Mutex<Vec<serde_json::Value>>) -> Option<()> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0usize;
    let mut gzip = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        if lower.starts_with("content-encoding:") && lower.contains("gzip") {
            gzip = true;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    if gzip {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .ok()?;
        body = plain;
    }
    if let Ok(json) = serde_json::from_slice(&body) {
        kept.lock().unwrap().push(json);
    }
    let mut writer = stream;
    writer
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        .ok()
}

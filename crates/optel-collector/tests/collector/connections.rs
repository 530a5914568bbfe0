// Included by collector.rs: the server over real sockets on 127.0.0.1 (framing, early refusal,
// timeouts), and the ingest-key cache after a deletion or revocation.

use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A collector over SQLite serving `config` on a free loopback port, on its own runtime; the
/// runtime and the server stop when the returned guard drops.
struct Served {
    addr: SocketAddr,
    key: String,
    _rt: tokio::runtime::Runtime,
    _store: TestStore,
}

fn served(config: optel_collector::ServerConfig) -> Served {
    let t = sqlite();
    let key = project(&*t.store, "acme");
    let st = state(&t.store);
    let rt = rt();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(optel_collector::serve_with_config(
        listener,
        st,
        config,
        std::future::pending(),
    ));
    Served {
        addr,
        key,
        _rt: rt,
        _store: t,
    }
}

/// Sends `head` (and `body`) on a new connection, then reads one answer: its status and body.
/// Fails when no complete answer arrives within `patience`.
fn exchange(addr: SocketAddr, head: &str, body: &[u8], patience: Duration) -> (u16, Value) {
    use std::io::Write as _;
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.write_all(body).unwrap();
    tcp.set_read_timeout(Some(patience)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = serde_json::from_slice(&got[end + 4..end + 4 + length])
                    .unwrap_or(Value::Null);
                return (status, body);
            }
        }
        match tcp.read(&mut buf) {
            Ok(0) => panic!("connection closed before a complete answer: {:?}", String::from_utf8_lossy(&got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "no complete answer after {:?} ({e}): {:?}",
                started.elapsed(),
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

fn post_head(key: &str, framing: &str) -> String {
    format!(
        "POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\n{framing}\r\n"
    )
}

/// Regression: a `Content-Length` of 10 GB was waited for rather than refused up front.
#[test]
fn a_content_length_above_the_limit_is_refused_before_the_body() {
    let s = served(optel_collector::ServerConfig::default());
    // (A length past u64, or a malformed one, is refused by hyper's parser: 400, empty body.)
    for length in ["10000000000", "4194305", "1000000000000000"] {
        let head = post_head(&s.key, &format!("content-length: {length}\r\n"));
        let (status, body) = exchange(s.addr, &head, b"", Duration::from_secs(2));
        assert_eq!(status, 413, "{length}: {body}");
        assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    }
    // Even with `Expect: 100-continue`: the refusal comes instead of the `100 Continue`.
    let head = post_head(&s.key, "content-length: 10000000000\r\nexpect: 100-continue\r\n");
    let (status, _) = exchange(s.addr, &head, b"", Duration::from_secs(2));
    assert_eq!(status, 413);
}

/// Regression: a malformed chunked body was answered `413 payload_too_large`.
#[test]
fn a_malformed_chunked_body_is_400() {
    let s = served(optel_collector::ServerConfig::default());
    let head = post_head(&s.key, "transfer-encoding: chunked\r\n");
    for body in [&b"zz\r\n{}\r\n0\r\n\r\n"[..], b"5\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n"] {
        let (status, answer) = exchange(s.addr, &head, body, Duration::from_secs(2));
        assert_eq!(status, 400, "{:?}: {answer}", String::from_utf8_lossy(body));
        assert_eq!(answer["error"]["code"], "invalid_body", "{answer}");
    }
    // A well-formed chunked batch is stored.
    let batch = serde_json::to_vec(&batch(1, "build", 2)).unwrap();
    let mut body = format!("{:x}\r\n", batch.len()).into_bytes();
    body.extend_from_slice(&batch);
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, answer) = exchange(s.addr, &head, &body, Duration::from_secs(2));
    assert_eq!(status, 200, "{answer}");
}

/// A body that trickles in slower than the body timeout is answered 408 at the timeout.
#[test]
fn a_slow_body_is_408_at_the_body_timeout() {
    let mut config = optel_collector::ServerConfig::default();
    config.body_timeout = Duration::from_millis(500);
    let s = served(config);
    let head = post_head(&s.key, "content-length: 100\r\n");
    let started = Instant::now();
    let (status, answer) = exchange(s.addr, &head, b"{\"sche", Duration::from_secs(3));
    assert_eq!(status, 408, "{answer}");
    assert_eq!(answer["error"]["code"], "request_timeout");
    assert!(started.elapsed() >= Duration::from_millis(450));
}

/// Regression: a project deleted by another process while the collector ran kept its key
/// accepted from the cache for 10 s, and each of its batches failed the whole group commit.
/// Now its first failed batch forgets its cached keys (the next request is 401), a revoked
/// key is refused within [`optel_collector::KEY_CACHE_TTL`], and an in-process deletion is
/// seen at once after [`AppState::forget_cached_keys`].
#[test]
fn the_key_cache_forgets_deleted_projects_and_revoked_keys() {
    let t = sqlite();
    let gone = project(&*t.store, "gone");
    let revoked = project(&*t.store, "revoked");
    let local = project(&*t.store, "local");
    let st = state(&t.store);
    rt().block_on(async {
        for key in [&gone, &revoked, &local] {
            assert_eq!(post_batch(&st, key, &batch(1, "build", 1)).await.0, StatusCode::OK);
        }
        // Deleted behind the collector's back: one failed batch, then 401.
        assert!(t.store.delete_project("gone").unwrap());
        let (status, body) = post_batch(&st, &gone, &batch(2, "build", 1)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(
            post_batch(&st, &gone, &batch(3, "build", 1)).await.0,
            StatusCode::UNAUTHORIZED
        );
        // Revoked behind its back: refused within the cache's lifetime.
        assert!(t.store.revoke_key(&optel_collector::hash_key(&revoked), now_ms()).unwrap());
        tokio::time::sleep(optel_collector::KEY_CACHE_TTL + Duration::from_millis(100)).await;
        assert_eq!(
            post_batch(&st, &revoked, &batch(4, "build", 1)).await.0,
            StatusCode::UNAUTHORIZED
        );
        // Deleted in process: refused at once.
        assert!(st.store.delete_project("local").unwrap());
        st.forget_cached_keys();
        assert_eq!(
            post_batch(&st, &local, &batch(5, "build", 1)).await.0,
            StatusCode::UNAUTHORIZED
        );
    });
}

/// Clients that each hold a large body half-sent cannot exhaust memory: bodies being read
/// share [`optel_collector::ServerConfig::body_memory`], and a body past it is refused at once
/// (503 `saturated`) without being read. (Before, 960 connections × 4 MiB could be held.)
#[test]
fn bodies_being_read_share_a_memory_budget() {
    use std::io::Write as _;
    let mut config = optel_collector::ServerConfig::default();
    config.body_memory = 6 << 20;
    let s = served(config);
    let big = format!("content-length: {}\r\n", 4 << 20);
    // The first 4 MiB body is being read (half of it sent) ...
    let mut held = TcpStream::connect(s.addr).unwrap();
    held.write_all(post_head(&s.key, &big).as_bytes()).unwrap();
    held.write_all(&vec![b' '; 2 << 20]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // ... so a second one does not fit: refused before its body.
    let (status, body) = exchange(s.addr, &post_head(&s.key, &big), b"", Duration::from_secs(2));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "saturated");
    // A small batch still fits beside it.
    let batch = serde_json::to_vec(&batch(1, "build", 2)).unwrap();
    let head = post_head(&s.key, &format!("content-length: {}\r\n", batch.len()));
    assert_eq!(exchange(s.addr, &head, &batch, Duration::from_secs(2)).0, 200);
    // Once the first is gone, its share is free again.
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let (status, body) = exchange(
        s.addr,
        &post_head(&s.key, &big),
        &vec![b' '; 4 << 20],
        Duration::from_secs(5),
    );
    assert_eq!(status, 400, "{body}"); // all spaces: read, then refused as JSON
    assert_eq!(body["error"]["code"], "invalid_json");
}

/// At the connection cap an idle connection gives way to a new one; with every connection
/// serving a request, a new connection is refused at once with a canned 503 (and the usual
/// error body), until a request body has been arriving for [`SLOW_BODY_GRACE`]: then that slow
/// body gives way. Slow bodies (which need a key) cannot hold every place for the whole body
/// timeout.
#[test]
fn at_the_cap_idle_connections_and_slow_bodies_give_way() {
    use std::io::Write as _;
    let mut config = optel_collector::ServerConfig::default();
    config.max_connections = 2;
    let s = served(config);
    let half_open = || {
        let mut tcp = TcpStream::connect(s.addr).unwrap();
        tcp.write_all(post_head(&s.key, "content-length: 100\r\n").as_bytes()).unwrap();
        tcp.write_all(b"{\"sch").unwrap();
        tcp
    };
    // One idle, one busy: the idle one gives way.
    let idle = TcpStream::connect(s.addr).unwrap();
    let busy = half_open();
    std::thread::sleep(Duration::from_millis(100));
    let (status, _) = exchange(
        s.addr,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"",
        Duration::from_secs(1),
    );
    assert_eq!(status, 200);
    drop(idle);
    // Both busy: refused at once.
    let also_busy = half_open();
    std::thread::sleep(Duration::from_millis(100));
    let (status, body) = exchange(
        s.addr,
        "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
        b"",
        Duration::from_secs(1),
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "too_many_connections");
    std::thread::sleep(optel_collector::SLOW_BODY_GRACE);
    let (status, _) = exchange(
        s.addr,
        "GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"",
        Duration::from_secs(1),
    );
    assert_eq!(status, 200);
    drop((busy, also_busy));
    // Counted at /metrics.
    let mut tcp = TcpStream::connect(s.addr).unwrap();
    std::io::Write::write_all(&mut tcp, b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    assert!(text.contains("optel_connections_replaced_total 2"), "{text}");
    assert!(text.contains("optel_connections_refused_total 1"), "{text}");
    assert!(text.contains("optel_connections_open "), "{text}");
}

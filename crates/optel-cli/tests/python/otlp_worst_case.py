"""Worst-case OTLP requests against a real `optel serve`: peak RSS (VmHWM) and CPU of the
collector process before and after each. Standard library only.

    python3 crates/optel-cli/tests/python/otlp_worst_case.py target/release/optel

Each case is sent 4 times concurrently (as a burst of clients would) on a fresh collector, so
the peak includes every request in flight. Results are recorded in BENCHMARKS.md.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

MAX_BODY = 4 * 1024 * 1024


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, payload):
    """A length-delimited field."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def fixed64(num, v):
    return varint(num << 3 | 1) + v.to_bytes(8, "little")


def vint(num, v):
    return varint(num << 3 | 0) + varint(v)


def wrap_spans(spans):
    # ExportTraceServiceRequest{1: ResourceSpans{2: ScopeSpans{2: Span...}}}
    return field(1, field(2, b"".join(spans)))


def pb_empty_spans():
    n = (MAX_BODY - 16) // 2
    return wrap_spans([field(2, b"")] * n)


def pb_spans_at_limit():
    span = field(2, field(9, b"") * 8)  # 8 empty attributes: 9 messages per span
    return wrap_spans([span] * 20_000)


def kv(key, value):
    return field(1, key.encode()) + field(2, field(1, value.encode()))


def pb_points_at_limit():
    now = time.time_ns() - 5_000_000_000
    points = []
    for i in range(19_999):
        p = (
            field(7, kv("command", "a"))
            + fixed64(2, now - 1_000 + i)
            + fixed64(3, now + i)
            + fixed64(6, 1)
        )
        points.append(field(1, p))
    # Sum{1: points, 2: temporality delta, 3: monotonic}
    s = b"".join(points) + vint(2, 1) + vint(3, 1)
    metric = field(1, b"command_invocation") + field(7, s)
    # ExportMetricsServiceRequest{1: ResourceMetrics{2: ScopeMetrics{2: Metric}}}
    return field(1, field(2, field(2, metric)))


def json_empty_spans():
    head, tail = '{"resourceSpans":[{"scopeSpans":[{"spans":[', "]}]}]}"
    n = (MAX_BODY - len(head) - len(tail)) // 3
    return (head + ",".join(["{}"] * n) + tail).encode()


def json_spans_at_limit():
    span = '{"attributes":[' + ",".join(['{"key":""}'] * 8) + "]}"
    return ('{"resourceSpans":[{"scopeSpans":[{"spans":[' + ",".join([span] * 20_000) + "]}]}]}").encode()


def json_points_at_limit():
    now = time.time_ns() - 5_000_000_000
    pts = [
        {
            "attributes": [{"key": "command", "value": {"stringValue": "a"}}],
            "startTimeUnixNano": str(now - 1_000 + i),
            "timeUnixNano": str(now + i),
            "asInt": "1",
        }
        for i in range(19_999)
    ]
    body = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "command_invocation",
                                "sum": {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": pts},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    return json.dumps(body, separators=(",", ":")).encode()


CASES = [
    ("protobuf: 4 MiB of empty spans", "/v1/traces", "application/x-protobuf", pb_empty_spans),
    ("protobuf: 20,000 spans x 8 empty attributes", "/v1/traces", "application/x-protobuf", pb_spans_at_limit),
    ("protobuf: 19,999 tiny command_invocation points", "/v1/metrics", "application/x-protobuf", pb_points_at_limit),
    ("JSON: 4 MiB of empty spans", "/v1/traces", "application/json", json_empty_spans),
    ("JSON: 20,000 spans x 8 empty attributes", "/v1/traces", "application/json", json_spans_at_limit),
    ("JSON: 19,999 tiny command_invocation points", "/v1/metrics", "application/json", json_points_at_limit),
]


def status(pid):
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    kb = lambda k: int(re.search(rf"^{k}:\s+(\d+) kB", text, re.M).group(1))
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    cpu = (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    return kb("VmHWM"), kb("VmRSS"), cpu


def post(url, key, ctype, body, out):
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", ctype)
    req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            out.append(r.status)
    except urllib.error.HTTPError as e:
        out.append(e.code)


def main():
    optel = sys.argv[1]
    print(f"| case | body | answers | VmHWM before → after | CPU s (4 requests) |")
    print(f"|---|---|---|---|---|")
    for name, path, ctype, make in CASES:
        body = make()
        with tempfile.TemporaryDirectory() as d:
            key = subprocess.run(
                [optel, "projects", "create", "bench", "--data-dir", d], check=True, capture_output=True, text=True
            ).stdout.strip().splitlines()[-1]
            server = subprocess.Popen(
                [optel, "serve", "--listen", "127.0.0.1:0", "--data-dir", d],
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "OPTEL_LOG": "warn"},
            )
            url = None
            for line in server.stderr:
                m = re.search(r"listening on (\S+)", line)
                if m:
                    url = m.group(1)
                    break
            threading.Thread(target=lambda: server.stderr.read(), daemon=True).start()
            time.sleep(0.3)
            hwm0, _, cpu0 = status(server.pid)
            answers = []
            threads = [threading.Thread(target=post, args=(url + path, key, ctype, body, answers)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            hwm1, _, cpu1 = status(server.pid)
            server.terminate()
            server.wait()
        print(
            f"| {name} | {len(body) / 1024 / 1024:.2f} MiB | {sorted(answers)} | "
            f"{hwm0 / 1024:.0f} MB → {hwm1 / 1024:.0f} MB | {cpu1 - cpu0:.2f} |"
        )


if __name__ == "__main__":
    main()

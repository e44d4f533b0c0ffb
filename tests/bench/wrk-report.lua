-- wrk script for tests/bench: prints one JSON line at the end (requests, errors, latency
-- percentiles in microseconds) for bench.mjs to parse. wrk.method stays GET: Debian's wrk 4.1.0
-- cannot measure HEAD (its parser waits for the body a HEAD response never has); bench.mjs uses
-- hload.c for HEAD.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nWRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0), latency.max))
end

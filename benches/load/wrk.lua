-- wrk script for benches/load.sh (same idea as shared/bench/anchors.sh).
-- Through a proxy (WRK_ABS_URL set) the request line is absolute-form:
--   GET http://origin.bench.test:PORT/1k HTTP/1.1
-- Direct (WRK_ABS_URL empty) it is origin-form. The request is static: no Lua runs per
-- request, so wrk's own cost is the same both ways. wrk counts responses whose status
-- is not 2xx/3xx in summary.errors.status, printed as err_status.
local abs = os.getenv("WRK_ABS_URL")
if abs and abs ~= "" then wrk.path = abs end
wrk.headers["Host"] = os.getenv("WRK_HOST")

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d max_us=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end

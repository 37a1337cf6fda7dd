-- wrk script for benches/soak.sh: steady keep-alive HTTP through the proxy.
--   WRK_ABS_URL   absolute-form target (GET http://origin.soak.test:PORT/1k HTTP/1.1)
--   WRK_HOST      Host header
--   WRK_DELAY_MS  pause of each connection between a response and its next request
--                 (0: as fast as possible), so that the load stays moderate
-- Every response whose status is not 2xx is counted (wrk itself counts only >= 400), as
-- are responses whose body is not WRK_BODY_BYTES long (0: not checked), and the totals
-- of every thread are printed by done() in one RESULT line.
local abs = os.getenv("WRK_ABS_URL")
if abs and abs ~= "" then wrk.path = abs end
wrk.headers["Host"] = os.getenv("WRK_HOST")
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0") or 0
local body_bytes = tonumber(os.getenv("WRK_BODY_BYTES") or "0") or 0

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  responses = 0
  non2xx = 0
  bad_body = 0
end

function delay()
  return delay_ms
end

function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif body_bytes > 0 and #body ~= body_bytes then
    bad_body = bad_body + 1
  end
end

function done(summary, latency, requests)
  local resp, n2, bb = 0, 0, 0
  for _, t in ipairs(threads) do
    resp = resp + (t:get("responses") or 0)
    n2 = n2 + (t:get("non2xx") or 0)
    bb = bb + (t:get("bad_body") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d responses=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d max_us=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d non2xx=%d bad_body=%d\n",
    summary.requests, resp, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, n2, bb))
end

-- wrk_post.lua - closed-loop POST of one prepared JSON body, for bench/gateway/bench.py.
-- Environment: BENCH_BODY (path of the request body), BENCH_AUTH (optional "Header-Name: value").
-- At the end it prints one line "BENCH_RESULT {json}": requests, rps, latency percentiles (ms), errors.
local path = os.getenv("BENCH_BODY") or error("set BENCH_BODY to the request body file")
local fh = assert(io.open(path, "rb"))
local payload = fh:read("*a")
fh:close()

wrk.method = "POST"
wrk.body = payload
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then
  local name, value = string.match(auth, "^%s*([^:]+)%s*:%s*(.-)%s*$")
  assert(name, "BENCH_AUTH must look like 'Header-Name: value'")
  wrk.headers[name] = value
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local function ms(p) return latency:percentile(p) / 1000.0 end
  io.write("BENCH_RESULT ")
  io.write(string.format(
    '{"requests":%d,"seconds":%.4f,"rps":%.3f,"p50_ms":%.4f,"p90_ms":%.4f,"p99_ms":%.4f,"p999_ms":%.4f,' ..
    '"mean_ms":%.4f,"max_ms":%.4f,"bytes":%d,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
    '"err_status":%d,"err_timeout":%d}\n',
    summary.requests, seconds, summary.requests / seconds, ms(50), ms(90), ms(99), ms(99.9),
    latency.mean / 1000.0, latency.max / 1000.0, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout))
end

-- Shared by the bench's wrk scripts: headers from the environment, one JSON line at the end.
--   BENCH_AUTH    the whole Authorization header value ("Bearer eyJ..." or "Basic ..."); empty: none
--   BENCH_ACCEPT  an Accept header (manifest rows)
--   BENCH_METHOD  GET (default) or HEAD
local common = {}

function common.headers()
  local h = {}
  local auth = os.getenv("BENCH_AUTH") or ""
  if auth ~= "" then h["Authorization"] = auth end
  local accept = os.getenv("BENCH_ACCEPT") or ""
  if accept ~= "" then h["Accept"] = accept end
  return h
end

-- summary of wrk plus `extra` (a table of numbers) as one line "BENCH_JSON {...}" on stdout
function common.report(summary, latency, extra)
  local e = summary.errors
  local fields = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_timeout":%d',
                  e.connect, e.read, e.write, e.timeout),
    string.format('"non_2xx_3xx":%d', e.status),
    string.format('"p50_us":%d,"p99_us":%d,"max_us":%d',
                  latency:percentile(50), latency:percentile(99), latency.max),
  }
  for k, v in pairs(extra or {}) do
    table.insert(fields, string.format('"%s":%d', k, v))
  end
  io.write("BENCH_JSON {" .. table.concat(fields, ",") .. "}\n")
end

return common

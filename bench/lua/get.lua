-- wrk -s get.lua URL: the same GET (or HEAD, BENCH_METHOD) on every request, with the bench headers.
package.path = string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.headers = common.headers()

function done(summary, latency, requests)
  common.report(summary, latency)
end

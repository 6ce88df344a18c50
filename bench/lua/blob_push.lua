-- wrk -s blob_push.lua BASE: small blob pushes, each a POST /v2/<repo>/blobs/uploads/ and a PUT of
-- the Location it answered with ?digest=, the blob as body (what docker/skopeo do for a small layer).
--   BENCH_REPO     repository
--   BENCH_BLOCK    file with the blob's constant part (size - 16 bytes)
--   BENCH_DIGESTS  file with one digest per line: blob i = block .. string.format("%016d", i)
--   BENCH_PER_THREAD  digests reserved to each wrk thread (thread n uses n*per_thread ...)
-- One Lua state serves all connections of a thread, and a response does not say which
-- connection it came on: every 202's Location goes into a queue, and the next request of
-- any connection PUTs to the oldest one (upload sessions are not tied to a connection).
package.path = string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

local repo, block, digests, per_thread, first
local uploads, next_index = {}, 0
created, wrapped, unexpected = 0, 0, 0  -- globals: read by done() through thread:get

function init(args)
  repo = os.getenv("BENCH_REPO")
  local f = assert(io.open(os.getenv("BENCH_BLOCK"), "rb"))
  block = f:read("*a")
  f:close()
  digests = {}
  for line in io.lines(os.getenv("BENCH_DIGESTS")) do
    table.insert(digests, line)
  end
  per_thread = tonumber(os.getenv("BENCH_PER_THREAD"))
  first = thread_id * per_thread
end

local base_headers = common.headers()
local put_headers = {}
for k, v in pairs(base_headers) do put_headers[k] = v end
put_headers["Content-Type"] = "application/octet-stream"

function request()
  local location = table.remove(uploads, 1)
  if location == nil then
    return wrk.format("POST", "/v2/" .. repo .. "/blobs/uploads/", base_headers, "")
  end
  if next_index >= per_thread then
    next_index = 0
    wrapped = wrapped + 1
  end
  local i = first + next_index
  next_index = next_index + 1
  local sep = string.find(location, "?", 1, true) and "&" or "?"
  return wrk.format("PUT", location .. sep .. "digest=" .. digests[i + 1], put_headers,
                    block .. string.format("%016d", i))
end

function response(status, headers, body)
  if status == 202 then
    local location = headers["Location"] or headers["location"]
    table.insert(uploads, (string.gsub(location, "^https?://[^/]+", "")))
  elseif status == 201 then
    created = created + 1
  else
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local totals = {created = 0, wrapped = 0, unexpected = 0}
  for _, thread in ipairs(threads) do
    for k, _ in pairs(totals) do totals[k] = totals[k] + thread:get(k) end
  end
  common.report(summary, latency, totals)
end

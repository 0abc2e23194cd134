-- wrk script: multipart `POST /v1/posts` with a JPEG, used by bench/bench_api.py.
--
--   wrk -t1 -c16 -d20s --latency -s bench/wrk_upload.lua http://127.0.0.1:8000 -- IMAGE KEY [1]
--
-- With a third argument "1" every request carries different bytes (a JPEG comment segment with a
-- counter right after the SOI marker), so the content-addressed store writes and fsyncs a new
-- blob each time instead of finding an identical one. `done` prints one machine-readable line.

local boundary = "backfire-bench-7d3f9a"
local image, key, distinct
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  image = f:read("*a")
  f:close()
  key = args[2]
  distinct = args[3] == "1"
end

local function part_header(name, extra)
  return "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. name .. "\""
    .. (extra or "") .. "\r\n"
end

function request()
  counter = counter + 1
  local img = image
  if distinct then
    local tag = string.format("bench-%d-%d", tid or 0, counter)
    local len = #tag + 2
    local seg = "\255\254" .. string.char(math.floor(len / 256), len % 256) .. tag
    img = image:sub(1, 2) .. seg .. image:sub(3)
  end
  local body = part_header("caption") .. "\r\nbench\r\n"
    .. part_header("image", "; filename=\"b.jpg\"") .. "Content-Type: image/jpeg\r\n\r\n"
    .. img .. "\r\n--" .. boundary .. "--\r\n"
  return wrk.format("POST", "/v1/posts", {
    ["Content-Type"] = "multipart/form-data; boundary=" .. boundary,
    ["Authorization"] = "Bearer " .. key,
  }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d "
      .. "p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end

-- wrk script for scripts/bench-webhook.sh: POSTs an AdmissionReview (Deployment, one container)
-- to the URL given to wrk, and prints a JSON summary line ("BENCH_JSON {...}") at the end.
--
-- Environment:
--   BENCH_TEMPLATE  AdmissionReview JSON file with the placeholder __IMAGE__ (required)
--   BENCH_IMAGE     the image of every request (warm: one digest), or
--   BENCH_IMAGE_LIST a file of image references, one a line: thread t of BENCH_THREADS sends
--                   lines t+1, t+1+T, t+1+2T, ... so every request names a distinct image
--   BENCH_THREADS   wrk's -t (needed with BENCH_IMAGE_LIST)
--   BENCH_STOP_WHEN_EXHAUSTED=1  a thread stops once each of its images was sent once (never
--                   repeats an image: the run stays cold); otherwise the list wraps (counted)
--   BENCH_CONN_RATE requests per second per connection, paced: before each request a connection
--                   waits an exponentially distributed time (mean 1/rate), so that the connections'
--                   requests together arrive as a Poisson stream of about rate x connections per
--                   second (a little less: a connection waits only once its response is in).
--                   Unset: each connection sends its next request as soon as it has the response.
--
-- A response that is not HTTP 200 with "allowed":true counts as "not_allowed" (with the bench
-- rule, an image whose report was not found is denied, so lookups that fail show up here).

-- Monotonic clock (LuaJIT FFI): the active window of a run that stops early (wrk itself always
-- reports -d as the duration, even when every thread has stopped).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local template_file = assert(os.getenv("BENCH_TEMPLATE"), "BENCH_TEMPLATE is required")
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local template, images, fixed_body, idx, step, first, stop_when_exhausted
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  math.randomseed(os.time() * 1000 + id)
  template = read_file(template_file)
  stop_when_exhausted = os.getenv("BENCH_STOP_WHEN_EXHAUSTED") == "1"
  wraps, not_allowed, sent, exhausted = 0, 0, 0, 0
  t_first, t_last = 0, 0
  local list = os.getenv("BENCH_IMAGE_LIST")
  if list then
    images = {}
    for line in io.lines(list) do
      if #line > 0 then images[#images + 1] = line end
    end
    step = tonumber(os.getenv("BENCH_THREADS") or "1")
    first = id + 1
    idx = first
  else
    local image = assert(os.getenv("BENCH_IMAGE"), "BENCH_IMAGE or BENCH_IMAGE_LIST is required")
    fixed_body = template:gsub("__IMAGE__", function() return image end)
  end
end

local conn_rate = tonumber(os.getenv("BENCH_CONN_RATE") or "")
if conn_rate then
  -- Per thread: wrk runs each thread's script in its own Lua state.
  function delay()
    -- wrk truncates the delay to whole milliseconds: round instead, so the mean stays 1/rate.
    return math.floor(-math.log(1 - math.random()) * 1000 / conn_rate + 0.5)
  end
end

function request()
  local body = fixed_body
  if images then
    if idx > #images then
      if stop_when_exhausted then
        -- Stop this thread; the request returned now is never measured.
        exhausted = 1
        wrk.thread:stop()
      else
        wraps = wraps + 1
      end
      idx = first
    end
    local image = images[idx]
    idx = idx + step
    body = template:gsub("__IMAGE__", function() return image end)
  end
  if sent == 0 then t_first = now() end
  sent = sent + 1
  return wrk.format("POST", nil, headers, body)
end

function response(status, hdrs, body)
  t_last = now()
  if status ~= 200 or not body:find('"allowed":true', 1, true) then
    not_allowed = not_allowed + 1
  end
end

function done(summary, latency, requests)
  local w, na, ex, first_t, last_t = 0, 0, 0, nil, nil
  for _, t in ipairs(threads) do
    w = w + (t:get("wraps") or 0)
    na = na + (t:get("not_allowed") or 0)
    ex = ex + (t:get("exhausted") or 0)
    local f, l = t:get("t_first") or 0, t:get("t_last") or 0
    if f > 0 and (not first_t or f < first_t) then first_t = f end
    if l > 0 and (not last_t or l > last_t) then last_t = l end
  end
  local active = (first_t and last_t and last_t > first_t) and (last_t - first_t) or summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"not_allowed":%d,"wraps":%d,"threads_exhausted":%d,"active_s":%.3f,"rps_active":%.1f}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, latency.mean / 1e3,
    e.connect, e.read, e.write, e.status, e.timeout, na, w, ex, active, summary.requests / active))
end

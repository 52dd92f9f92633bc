-- wrk script for benchmarks/soak.py: the HTTP/1.1 part of the soak mix.
--
-- Usage: wrk -t T -c C -d SECONDS -s benchmarks/soak.lua URL -- QUOTA_PER_THREAD [STREAM_BYTES]
--
-- Each request is drawn from the mix below; each response is checked (status 200 and one of the
-- bodies the soak apps send); a thread stops once it has QUOTA_PER_THREAD responses. done()
-- prints one "soak-wrk" line that benchmarks/soak.py reads.
--
-- wrk and not a Python client for this part: on a 2-core machine the client takes CPU from the
-- server it measures, and wrk costs a third of the CPU per request that an asyncio client does
-- (figures in benchmarks/soak.py).

local echo = string.rep("e", 64)
local hello = "Hello, world!"
local stream = string.rep("0123456789abcdef", 16)
local mix = {}
local bodies = {}

local function add(weight, request)
  for _ = 1, weight do mix[#mix + 1] = request end
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  quota = tonumber(args[1])
  if args[2] then stream = string.rep("x", tonumber(args[2])) end
  bodies = {[hello] = true, [echo] = true, [stream] = true}
  local host = "Host: soak\r\n"
  -- kept-alive GET
  add(40, "GET / HTTP/1.1\r\n" .. host .. "\r\n")
  -- POST with a Content-Length body
  add(15, "POST /echo HTTP/1.1\r\n" .. host .. "Content-Length: 64\r\n\r\n" .. echo)
  -- POST with a chunked body, in three chunks with an extension
  add(15, "POST /echo HTTP/1.1\r\n" .. host .. "Transfer-Encoding: chunked\r\n\r\n"
      .. "20;part=1\r\n" .. string.sub(echo, 1, 32) .. "\r\n10\r\n" .. string.sub(echo, 33, 48)
      .. "\r\n10\r\n" .. string.sub(echo, 49, 64) .. "\r\n0\r\n\r\n")
  -- a streamed (chunked) response
  add(20, "GET /stream HTTP/1.1\r\n" .. host .. "\r\n")
  -- a new connection: the server closes after the response and wrk reconnects
  add(10, "GET / HTTP/1.1\r\n" .. host .. "Connection: close\r\n\r\n")
  count = 0
  bad = 0
end

function request()
  return mix[math.random(#mix)]
end

function response(status, headers, body)
  count = count + 1
  if status ~= 200 or not bodies[body] then
    bad = bad + 1
    if bad <= 3 then io.stderr:write(string.format("bad response %d %q\n", status, body)) end
  end
  if count == quota then
    -- wrk's main thread sleeps for the whole -d duration; soak.py sends SIGINT to end the run
    -- once every thread has said it is done.
    io.stderr:write("soak-wrk-thread-done\n")
    io.stderr:flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total, wrong = 0, 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get("count") or 0)
    wrong = wrong + (thread:get("bad") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "soak-wrk responses=%d bad=%d connect=%d read=%d write=%d status=%d timeout=%d "
    .. "duration_us=%d p50_us=%d p99_us=%d max_us=%d\n",
    total, wrong, e.connect, e.read, e.write, e.status, e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max))
end

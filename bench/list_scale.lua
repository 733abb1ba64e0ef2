-- wrk script for bench/list_scale.sh: each request goes to a random mailbox of the bulk-loaded
-- database (bench/list_scale_load.sql), tallies the response statuses, and prints a summary line.
--
-- Environment (set by list_scale.sh):
--   BENCH_MODE   "list"    GET  /v1/mailboxes/{addr}/messages?folder=INBOX   (first page, 50)
--                "mwi"     GET  /v1/mailboxes/{addr}/mwi
--                "deposit" POST /v1/mailboxes/{addr}/messages  (body: BENCH_BODY, audio/wav)
--   BENCH_SET    "all" (any of the 100,000 mailboxes, uniformly) or "heavy" (one of the 303
--                mailboxes with 200-1,000 messages)
--   BENCH_TOKEN  bearer token
--   BENCH_BODY   file whose bytes are the deposit body (deposit mode)
-- Addresses are computed as the load script lays them out: mailbox index idx in 0..99999 is
-- (2000 + idx % 100)@tenant-<idx / 100 + 1, 4 digits>; the heavy ones are idx % 331 == 17.

local threads = {}
local next_id = 1

function setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local function address(idx)
   return string.format("%d@tenant-%04d", 2000 + idx % 100, math.floor(idx / 100) + 1)
end

function init(args)
   mode = os.getenv("BENCH_MODE") or "list"
   set = os.getenv("BENCH_SET") or "all"
   headers = { ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN") }
   if mode == "deposit" then
      local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
      body = f:read("*a")
      f:close()
      headers["Content-Type"] = "audio/wav"
   end
   math.randomseed(os.time() * 100 + tid)
   -- Throw away the first draws (LuaJIT's generator is fine, this is belt and braces).
   for _ = 1, 10 do math.random() end
   statuses = {}
end

local function pick()
   if set == "heavy" then
      -- idx = 331 h + 17 for h in 0..302 (331 * 302 + 17 = 99,979).
      return 331 * math.random(0, 302) + 17
   end
   return math.random(0, 99999)
end

function request()
   local a = address(pick())
   if mode == "mwi" then
      return wrk.format("GET", "/v1/mailboxes/" .. a .. "/mwi", headers)
   elseif mode == "deposit" then
      return wrk.format("POST", "/v1/mailboxes/" .. a .. "/messages", headers, body)
   end
   return wrk.format("GET", "/v1/mailboxes/" .. a .. "/messages?folder=INBOX", headers)
end

function response(status, hdrs, resp_body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local counts = {}
   for _, t in ipairs(threads) do
      for code, c in pairs(t:get("statuses") or {}) do
         counts[code] = (counts[code] or 0) + c
      end
   end
   local parts, non2xx = {}, 0
   for code, c in pairs(counts) do
      table.insert(parts, code .. ":" .. c)
      if code < 200 or code > 299 then non2xx = non2xx + c end
   end
   table.sort(parts)
   local e = summary.errors
   io.write(string.format(
      "RESULT p50_us=%d p99_us=%d requests=%d duration_us=%d non2xx=%d sock_errors=%d statuses=%s\n",
      latency:percentile(50), latency:percentile(99), summary.requests, summary.duration, non2xx,
      e.connect + e.read + e.write + e.timeout,
      (#parts > 0) and table.concat(parts, ",") or "none"))
end

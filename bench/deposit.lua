-- wrk script for bench/deposit_latency.sh: sends the same body to voxmail (POST deposit) or to
-- nginx (WebDAV PUT), counts the response statuses, and prints a machine-readable summary.
--
-- Environment (set by deposit_latency.sh):
--   BENCH_MODE       "voxmail" or "nginx"
--   BENCH_BODY       file whose bytes are the request body
--   BENCH_TOKEN      voxmail bearer token (pbx role)
--   BENCH_MAILBOXES  number of mailboxes, numbered from BENCH_MAILBOX_BASE, in context "default"
--   BENCH_THREADS    wrk -t value (to interleave the threads' mailbox sequences)

local threads = {}
local next_id = 1

function setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
   body = f:read("*a")
   f:close()
   mode = os.getenv("BENCH_MODE")
   nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
   nmailboxes = tonumber(os.getenv("BENCH_MAILBOXES") or "1")
   base = tonumber(os.getenv("BENCH_MAILBOX_BASE") or "1000")
   headers = { ["Content-Type"] = "audio/wav" }
   if mode == "voxmail" then
      headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
   end
   n = 0
   statuses = {}
end

function request()
   n = n + 1
   if mode == "voxmail" then
      -- Round-robin over the mailboxes; the threads interleave so they do not share a sequence.
      local mb = base + (((n - 1) * nthreads + (tid - 1)) % nmailboxes)
      return wrk.format("POST", "/v1/mailboxes/" .. mb .. "@default/messages", headers, body)
   else
      -- A new file per request, like a deposit (201 Created).
      return wrk.format("PUT", "/dav/t" .. tid .. "/" .. n .. ".wav", headers, body)
   end
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
   io.write(string.format("ERRORS connect=%d read=%d write=%d timeout=%d status>399=%d\n",
      e.connect, e.read, e.write, e.timeout, e.status))
end

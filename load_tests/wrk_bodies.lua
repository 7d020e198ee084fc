-- wrk script: POST a rotating list of pre-generated JSON bodies, print the summary as JSON.
--
--   wrk -t1 -c64 -d10s --latency -s load_tests/wrk_bodies.lua URL -- BODIES_FILE PATH
--
-- BODIES_FILE holds one JSON body per line (load_tests/applicants.py writes it). Requests are
-- formatted once, in init(), so the generator's per-request cost stays a table lookup.

local requests_ = {}
local index = 0

function init(args)
   local bodies_file, path = args[1], args[2]
   if bodies_file == nil or path == nil then
      error("usage: wrk ... -s wrk_bodies.lua URL -- BODIES_FILE PATH")
   end
   local headers = { ["Content-Type"] = "application/json" }
   for line in io.lines(bodies_file) do
      if #line > 0 then
         requests_[#requests_ + 1] = wrk.format("POST", path, headers, line)
      end
   end
   if #requests_ == 0 then
      error("no bodies in " .. bodies_file)
   end
end

function request()
   index = index % #requests_ + 1
   return requests_[index]
end

function done(summary, latency, _)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)))
end

-- wrk script for bench/run.mjs: optional POST body, and one machine-readable summary line
-- (latency in microseconds) after wrk's own report.
--   wrk ... -s bench/wrk-report.lua URL              -> GET
--   wrk ... -s bench/wrk-report.lua URL -- post N    -> POST with an N-byte body

function init(args)
   if args[1] == "post" then
      wrk.method = "POST"
      wrk.body = string.rep("a", tonumber(args[2]))
      wrk.headers["Content-Type"] = "application/octet-stream"
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
      '"lat_mean_us":%.1f,"lat_max_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end

-- wrk script for POST /v1/search: rotates through 48 queries and prints one summary line with
-- requests/s, p50/p95/p99 latency (ms) and error counts.
--
-- With BENCH_MEAN_DELAY_MS set, each connection waits an exponentially distributed pause (that
-- mean) before each request: an open-loop, Poisson-like arrival of about
-- connections / mean-delay requests per second, instead of back-to-back requests.
local key = os.getenv("RAGPLANE_API_KEY") or ""
local collection = os.getenv("BENCH_COLLECTION") or "bench"
local topics = { "latency of the cluster", "quarterly revenue forecast", "warehouse shipment delays",
  "vector index design", "museum in the village", "winter harbour market", "budget review by the team",
  "model training data", "storage replica policy", "customer invoice approved", "network request measured",
  "library garden summer" }
local suffixes = { "", " details", " report", " overview" }
local queries = {}
for _, t in ipairs(topics) do
  for _, s in ipairs(suffixes) do queries[#queries + 1] = t .. s end
end
local i = 0
local mean_delay = tonumber(os.getenv("BENCH_MEAN_DELAY_MS") or "")
if mean_delay then
  delay = function()
    return math.floor(-math.log(1 - math.random()) * mean_delay)
  end
end
init = function(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
request = function()
  i = i + 1
  local body = string.format('{"collection":"%s","query":"%s","top_k":5}', collection, queries[(i % #queries) + 1])
  return wrk.format("POST", "/v1/search",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key }, body)
end
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_ms=%.1f p95_ms=%.1f p99_ms=%.1f requests=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, summary.requests, e.status, e.connect, e.read, e.write, e.timeout))
end

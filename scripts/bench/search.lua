-- wrk script for POST /v1/search: rotates through 48 queries and prints one summary line with
-- requests/s, p50/p95/p99 latency (ms) and error counts.
--
-- With BENCH_MISS_SHARE set (0 to 1), that share of requests, evenly spread, gets a fresh
-- query: three words drawn from a list of 128 and one of the suffixes, about as many tokens as
-- the 48 (a query's embedding costs in proportion to its tokens). One of 8 million, it is
-- almost never sent twice in a run, so neither the result cache nor the embedding cache holds
-- it: a workload of cache hits mixed with computed searches.
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
local miss_share = tonumber(os.getenv("BENCH_MISS_SHARE") or "0") or 0
local words = {}
for w in ([[
  account active answer archive audit balance batch border branch bridge budget buffer
  cabinet campaign capital carbon cargo castle cellar channel chapter client climate cluster
  coastal column contract copper council credit culture current customer dataset delivery
  design digital director disk domain energy engine estate export factory farm field filter
  finance forest freight garden glacier grid harbour health highway history holiday hospital
  index invoice island journal kernel label ledger library license market meadow memory
  metric mineral model mountain museum network notice office orchard packet parcel
  partner pension pipeline planning policy portal quarter queue railway record region replica
  report research revenue river route salary sample schedule school season sensor server
  shipment signal sketch snapshot station storage summer supplier survey tariff teacher
  theatre timber training transit valley vendor village volume warehouse winter
]]):gmatch("%a+") do words[#words + 1] = w end
local mean_delay = tonumber(os.getenv("BENCH_MEAN_DELAY_MS") or "")
if mean_delay then
  delay = function()
    return math.floor(-math.log(1 - math.random()) * mean_delay)
  end
end
-- Each thread's number, in its seed: two threads started in the same microsecond would
-- otherwise draw the same pauses and the same fresh queries.
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end
init = function(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6) + (thread_id or 0) * 1000003)
end
request = function()
  i = i + 1
  local query = queries[(i % #queries) + 1]
  -- Evenly spread, so that every run of a setting has the same mix.
  if math.floor(i * miss_share) > math.floor((i - 1) * miss_share) then
    query = string.format("%s %s %s%s", words[math.random(#words)], words[math.random(#words)],
      words[math.random(#words)], suffixes[math.random(#suffixes)])
  end
  local body = string.format('{"collection":"%s","query":"%s","top_k":5}', collection, query)
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

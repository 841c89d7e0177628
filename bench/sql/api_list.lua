-- wrk: GET /api/v1/jobs with the filters of api_list.pgbench, a random
-- tenant's number as the search.
math.randomseed(os.time())
request = function()
  local q = string.format("%04d", math.random(0, @TENANTS@ - 1))
  return wrk.format("GET", "/api/v1/jobs?status=completed&type=erase&q=" .. q .. "&limit=50")
end

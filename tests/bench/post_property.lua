-- post_property.lua - wrk script: POST /v1/properties with a hostname that is
-- unique across threads, requests and runs. Arguments (after --): API key,
-- edge hostname id.
local counter = 0
local threads = 0

function setup(thread)
	thread:set("thread_no", threads)
	threads = threads + 1
end

function init(args)
	token = args[1]
	edge = args[2]
	run = tostring(os.time())
end

function request()
	counter = counter + 1
	local body = string.format(
		'{"name":"bench","hostnames":["p%d-%d-%s.bench.example.com"],' ..
		'"edge_hostname_id":"%s","certificate_renew_automation":false}',
		thread_no, counter, run, edge)
	return wrk.format("POST", "/v1/properties",
		{ ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" },
		body)
end

-- post_certificate.lua - wrk script: POST /v1/certificates (self-signed,
-- ecdsa-p256) with unique hostnames; used to fill the database for the
-- memory benchmark. Arguments (after --): API key.
local counter = 0
local threads = 0

function setup(thread)
	thread:set("thread_no", threads)
	threads = threads + 1
end

function init(args)
	token = args[1]
	run = tostring(os.time())
end

function request()
	counter = counter + 1
	local body = string.format(
		'{"source":"self_signed","name":"bench %d-%d","hostnames":["c%d-%d-%s.bench.example.com"],' ..
		'"validity_days":90}', thread_no, counter, thread_no, counter, run)
	return wrk.format("POST", "/v1/certificates",
		{ ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" },
		body)
end

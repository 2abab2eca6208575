-- get_auth.lua - wrk script: GET the given paths in turn with a bearer key.
-- Arguments (after --): API key, path [, path ...].
local i = 0

function init(args)
	token = args[1]
	paths = {}
	for n = 2, #args do
		paths[#paths + 1] = args[n]
	end
end

function request()
	i = i % #paths + 1
	return wrk.format("GET", paths[i], { ["Authorization"] = "Bearer " .. token })
end

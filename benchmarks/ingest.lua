-- wrk script: POST pre-signed Twilio webhooks, each with its own MessageSid.
-- args: <requests file> <path> <first line> ; the file holds "signature<TAB>body" lines.
local lines = {}
local index = 0
local path = "/api/sms"

function init(args)
  local file = args[1]
  path = args[2]
  local first = tonumber(args[3])
  local thread_count = tonumber(args[4])
  local thread_no = tonumber(args[5])
  local n = 0
  for line in io.lines(file) do
    n = n + 1
    if n >= first and (n % thread_count) == thread_no then
      local tab = line:find("\t")
      lines[#lines + 1] = { line:sub(1, tab - 1), line:sub(tab + 1) }
    end
  end
end

function request()
  index = index + 1
  if index > #lines then index = 1 end
  local item = lines[index]
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Twilio-Signature"] = item[1],
  }, item[2])
end

function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d\n", summary.requests, summary.duration,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end

-- netliver: tell the gateway that a study is complete in Orthanc.
--
-- Orthanc calls OnStableStudy(studyId, tags, metadata) once no instance of the study has
-- arrived for "StableAge" seconds. We POST {"ID": "<orthanc study id>"} as JSON to the
-- gateway's POST /hooks/orthanc/stable-study (public contract) with "Prefer: respond-async", so
-- the gateway answers 202 at once and then resolves the study
-- through Orthanc's REST API, records an ImagingStudy and, for a dosimetry study, starts the
-- voxel dosimetry job; repeated posts of one study start no duplicate job, and a missed post
-- is caught up by the gateway from Orthanc's /changes feed.
--
-- Settings, first found wins (environment of the Orthanc process, then the "NetLiver" section
-- of the Orthanc configuration):
--   NETLIVER_HOOK_URL    / NetLiver.HookUrl    gateway hook URL
--                        (default http://127.0.0.1:8080/hooks/orthanc/stable-study)
--   NETLIVER_HOOK_TOKEN  / NetLiver.HookToken  shared secret sent as "X-Internal-Token"
--                        (the gateway's INTERNAL_TOKEN)
--   NETLIVER_HOOK_BEARER / NetLiver.HookBearer a JWT sent as "Authorization: Bearer ..."
--                        whose scopes cover what the hook reads and writes (docs/auth.md):
--                        system/DiagnosticReport.cu system/Endpoint.cu system/ImagingStudy.crus system/Observation.crus system/Patient.rs system/Provenance.cu system/Task.cu

local DEFAULT_URL = 'http://127.0.0.1:8080/hooks/orthanc/stable-study'

local function setting(envName, configKey)
  local value = os.getenv(envName)
  if value ~= nil and value ~= '' then
    return value
  end
  local ok, config = pcall(GetOrthancConfiguration)
  if ok and type(config) == 'table' and type(config['NetLiver']) == 'table' then
    value = config['NetLiver'][configKey]
    if value ~= nil and value ~= '' then
      return value
    end
  end
  return nil
end

local function jsonString(text)
  -- Orthanc ids are hex digits and dashes; escape anyway so the body is always valid JSON.
  return '"' .. string.gsub(text, '[%c"\\]', function(c)
    return string.format('\\u%04x', string.byte(c))
  end) .. '"'
end

function OnStableStudy(studyId, tags, metadata)
  local url = setting('NETLIVER_HOOK_URL', 'HookUrl') or DEFAULT_URL
  local headers = { ['Content-Type'] = 'application/json' }
  local token = setting('NETLIVER_HOOK_TOKEN', 'HookToken')
  if token ~= nil then
    headers['X-Internal-Token'] = token
  end
  local bearer = setting('NETLIVER_HOOK_BEARER', 'HookBearer')
  if bearer ~= nil then
    headers['Authorization'] = 'Bearer ' .. bearer
  end
  -- Answered at once (202) and handled after the answer: HttpPost holds Orthanc's Lua lock, which
  -- the REST requests the gateway resolves the study with would otherwise wait for.
  headers['Prefer'] = 'respond-async'
  local body = '{"ID": ' .. jsonString(studyId) .. '}'
  -- HttpPost returns nil when the request fails; the gateway's /changes catch-up covers it.
  local answer = HttpPost(url, body, headers)
  if answer == nil then
    print('netliver: stable-study notification for ' .. studyId .. ' to ' .. url .. ' failed')
  else
    print('netliver: stable study ' .. studyId .. ' notified to ' .. url)
  end
end

-- Argo CD health for kubetune's FineTuneJob, ModelExport and InferenceService (kubetune.io/v1alpha1).
-- The operator sets the kstatus conditions Ready, Reconciling and Stalled on all three kinds; this check reads
-- them: Stalled -> Degraded, Ready -> Healthy, at rest on purpose (suspended, scaled to zero) -> Suspended,
-- anything else -> Progressing. The message is the object's own status.message.
local hs = {status = "Progressing", message = "waiting for the kubetune operator"}
local status = obj.status
if status == nil then
  return hs
end
if status.message ~= nil and status.message ~= "" then
  hs.message = status.message
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.message = "waiting for the kubetune operator to observe generation " .. tostring(generation)
  return hs
end
local conditions = {}
for _, condition in ipairs(status.conditions or {}) do
  conditions[condition.type] = condition
end
local function holds(name)
  return conditions[name] ~= nil and conditions[name].status == "True"
end
if holds("Stalled") then
  hs.status = "Degraded"
elseif holds("Ready") then
  hs.status = "Healthy"
elseif holds("Reconciling") then
  hs.status = "Progressing"
elseif conditions["Reconciling"] ~= nil then
  hs.status = "Suspended"
end
return hs

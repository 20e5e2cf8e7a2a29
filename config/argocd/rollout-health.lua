-- Argo CD health check for ota.otaflow.io/Rollout.
-- Succeeded → Healthy, Paused → Suspended, Aborted → Degraded, otherwise
-- Progressing. The message is the Ready condition's.
local hs = {status = "Progressing", message = "Waiting for the rollout controller"}
if obj.status == nil then
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "Waiting for the rollout controller to observe the latest spec"
  return hs
end
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" and c.message ~= nil and c.message ~= "" then
      hs.message = c.message
    end
  end
end
local phase = obj.status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Paused" then
  hs.status = "Suspended"
elseif phase == "Aborted" then
  hs.status = "Degraded"
  if obj.status.abortReason ~= nil and obj.status.abortReason ~= "" then
    hs.message = obj.status.abortReason
  end
end
return hs

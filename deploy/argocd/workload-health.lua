-- Argo CD health of a TrainingRun, Alignment or Evaluation (infinitecontext.dev).
-- Healthy: Ready=True for the current generation. Suspended: spec.suspend took effect.
-- Degraded: the work failed or the spec is invalid. Progressing: anything else.
local hs = {}
local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end
local ready = condition(obj.status, "Ready")
local message = (ready ~= nil and ready.message) or ""
local suspended = condition(obj.status, "Suspended")
if suspended ~= nil and suspended.status == "True" then
  hs.status = "Suspended"
  hs.message = suspended.message or "Suspended"
  return hs
end
if obj.status.phase == "Failed" or obj.status.phase == "Invalid" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
hs.status = "Progressing"
hs.message = message
return hs

-- Argo CD health of an InferenceService (infinitecontext.dev).
-- Degraded: a rollout failed (RolledBack=True or Degraded=True). Progressing: a new
-- generation or a canary is rolling out. Healthy: Ready=True. Suspended: 0 replicas.
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
for _, kind in ipairs({"Degraded", "RolledBack"}) do
  local c = condition(obj.status, kind)
  if c ~= nil and c.status == "True" then
    hs.status = "Degraded"
    hs.message = c.message or kind
    return hs
  end
end
if obj.spec ~= nil and obj.spec.replicas == 0 then
  hs.status = "Suspended"
  hs.message = "Scaled to zero replicas"
  return hs
end
local progressing = condition(obj.status, "Progressing")
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = progressing.message or "Rolling out"
  return hs
end
local ready = condition(obj.status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end
hs.status = "Progressing"
hs.message = (ready ~= nil and ready.message) or "Waiting for replicas"
return hs

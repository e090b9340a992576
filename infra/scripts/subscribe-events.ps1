# azd postdeploy hook on Windows (PowerShell 7, no Git Bash needed); the same as subscribe-events.sh:
# subscribe the HR storage account's blob-created events (incoming container, .csv only) to the
# deployed function's blobs_extension webhook, with dead-lettering. Its key only exists once the code
# is deployed. Idempotent: re-running updates the subscription.
# Without azd: deploy the templates again with subscribeEvents=true / subscribe_events = true.
$ErrorActionPreference = 'Stop'
$PSNativeCommandUseErrorActionPreference = $true
foreach ($name in 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_NAME', 'HR_STORAGE_ACCOUNT') {
  if (-not [Environment]::GetEnvironmentVariable($name)) { throw "$name is not set (azd sets it from the outputs)" }
}
$group = $env:AZURE_RESOURCE_GROUP
$app = $env:AZURE_FUNCTION_NAME

$topic = az eventgrid system-topic list -g $group --query "[0].name" -o tsv
$storageId = az storage account show -g $group -n $env:HR_STORAGE_ACCOUNT --query id -o tsv
$hostName = az functionapp show -g $group -n $app --query defaultHostName -o tsv
$key = az functionapp keys list -g $group -n $app --query systemKeys.blobs_extension -o tsv
if (-not $key) {
  throw 'the blobs_extension key does not exist yet: is the code deployed and the host started?'
}

az eventgrid system-topic event-subscription create `
  -g $group --system-topic-name $topic --name hr-incoming-csv `
  --endpoint-type webhook `
  --endpoint "https://$hostName/runtime/webhooks/blobs?functionName=Host.Functions.hr_file_arrived&code=$key" `
  --included-event-types Microsoft.Storage.BlobCreated `
  --subject-begins-with /blobServices/default/containers/hr-incoming/ `
  --subject-ends-with .csv `
  --max-events-per-batch 1 --max-delivery-attempts 30 --event-ttl 1440 `
  --deadletter-identity systemassigned `
  --deadletter-identity-endpoint "$storageId/blobServices/default/containers/hr-deadletter" `
  --output none
Write-Output "Event Grid now delivers new .csv files in hr-incoming to $app"

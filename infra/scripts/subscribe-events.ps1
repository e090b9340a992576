# azd postdeploy hook on Windows (PowerShell 7, no Git Bash needed); the same as subscribe-events.sh:
# subscribe the HR storage account's blob-created events (incoming container, .csv only) to the
# deployed function's blobs_extension webhook, with dead-lettering. Its key only exists once the code
# is deployed and the host has started: the hook asks again for up to HR_HOOK_KEY_ATTEMPTS x
# HR_HOOK_KEY_WAIT_SECONDS (18 x 10 s, about 3 minutes). Idempotent: re-running updates the
# subscription. The key is never printed.
# Without azd: deploy the templates again with subscribeEvents=true / subscribe_events = true.
$ErrorActionPreference = 'Stop'
$PSNativeCommandUseErrorActionPreference = $true
foreach ($name in 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_NAME', 'HR_STORAGE_ACCOUNT') {
  if (-not [Environment]::GetEnvironmentVariable($name)) { throw "$name is not set (azd sets it from the outputs)" }
}
$group = $env:AZURE_RESOURCE_GROUP
$app = $env:AZURE_FUNCTION_NAME
$attempts = if ($env:HR_HOOK_KEY_ATTEMPTS) { [int]$env:HR_HOOK_KEY_ATTEMPTS } else { 18 }
$waitSeconds = if ($env:HR_HOOK_KEY_WAIT_SECONDS) { [int]$env:HR_HOOK_KEY_WAIT_SECONDS } else { 10 }

$topic = az eventgrid system-topic list -g $group --query "[0].name" -o tsv
$storageId = az storage account show -g $group -n $env:HR_STORAGE_ACCOUNT --query id -o tsv
$hostName = az functionapp show -g $group -n $app --query defaultHostName -o tsv

$key = $null
for ($attempt = 1; $attempt -le $attempts; $attempt++) {
  # A host that is still starting answers with an error or without the key: both mean "not yet".
  try { $key = az functionapp keys list -g $group -n $app --query systemKeys.blobs_extension -o tsv } catch { $key = $null }
  if ($key) { break }
  if ($attempt -lt $attempts) {
    Write-Host "waiting for the function's blobs_extension key (attempt $attempt of $attempts)"
    Start-Sleep -Seconds $waitSeconds
  }
}
if (-not $key) {
  throw "the blobs_extension key still does not exist after $attempts attempts: is the code deployed and the host started? Then re-run azd deploy (or azd hooks run postdeploy)."
}

$endpoint = "https://$hostName/runtime/webhooks/blobs?functionName=Host.Functions.hr_file_arrived&code=$key"
if ($IsWindows) {
  # az is az.cmd there: cmd.exe parses the arguments again and would cut the URL at '&' (the rest,
  # with the key, would run as a command and be echoed). Double quotes inside the argument reach
  # cmd.exe and keep the '&' literal (Azure/azure-cli doc/quoting-issues-with-powershell.md); Legacy
  # passing hands them over unescaped, which is what PowerShell 7.3+ does for .cmd files anyway.
  $PSNativeCommandArgumentPassing = 'Legacy'
  $endpoint = '"' + $endpoint + '"'
}

az eventgrid system-topic event-subscription create `
  -g $group --system-topic-name $topic --name hr-incoming-csv `
  --endpoint-type webhook `
  --endpoint $endpoint `
  --included-event-types Microsoft.Storage.BlobCreated `
  --subject-begins-with /blobServices/default/containers/hr-incoming/ `
  --advanced-filter subject StringEndsWith .csv .xlsx `
  --max-events-per-batch 1 --max-delivery-attempts 30 --event-ttl 1440 `
  --deadletter-identity systemassigned `
  --deadletter-identity-endpoint "$storageId/blobServices/default/containers/hr-deadletter" `
  --output none
Write-Output "Event Grid now delivers new .csv files in hr-incoming to $app"

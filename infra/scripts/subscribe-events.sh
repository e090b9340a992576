#!/bin/sh
# azd postdeploy hook: subscribe the HR storage account's blob-created events (incoming container,
# .csv only) to the deployed function's blobs_extension webhook, with dead-lettering. Its key only
# exists once the code is deployed and the host has started, which can take a few minutes after
# `azd deploy`: the hook asks again for up to HR_HOOK_KEY_ATTEMPTS x HR_HOOK_KEY_WAIT_SECONDS
# (18 x 10 s, about 3 minutes). Idempotent: re-running updates the subscription. The key is never
# printed. Without azd: deploy the templates again with subscribeEvents=true / subscribe_events = true.
set -eu
: "${AZURE_RESOURCE_GROUP:?}" "${AZURE_FUNCTION_NAME:?}" "${HR_STORAGE_ACCOUNT:?}"
attempts="${HR_HOOK_KEY_ATTEMPTS:-18}"
wait_seconds="${HR_HOOK_KEY_WAIT_SECONDS:-10}"

topic=$(az eventgrid system-topic list -g "$AZURE_RESOURCE_GROUP" --query "[0].name" -o tsv)
storage_id=$(az storage account show -g "$AZURE_RESOURCE_GROUP" -n "$HR_STORAGE_ACCOUNT" --query id -o tsv)
host=$(az functionapp show -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_NAME" --query defaultHostName -o tsv)

attempt=1
while :; do
  # A host that is still starting answers with an error or without the key: both mean "not yet".
  key=$(az functionapp keys list -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_NAME" \
    --query systemKeys.blobs_extension -o tsv) || key=""
  [ -n "$key" ] && break
  if [ "$attempt" -ge "$attempts" ]; then
    echo "the blobs_extension key still does not exist after $attempts attempts: is the code deployed and the host started? Then re-run azd deploy (or azd hooks run postdeploy)." >&2
    exit 1
  fi
  echo "waiting for the function's blobs_extension key (attempt $attempt of $attempts)" >&2
  attempt=$((attempt + 1))
  sleep "$wait_seconds"
done

az eventgrid system-topic event-subscription create \
  -g "$AZURE_RESOURCE_GROUP" --system-topic-name "$topic" --name hr-incoming-csv \
  --endpoint-type webhook \
  --endpoint "https://$host/runtime/webhooks/blobs?functionName=Host.Functions.hr_file_arrived&code=$key" \
  --included-event-types Microsoft.Storage.BlobCreated \
  --subject-begins-with /blobServices/default/containers/hr-incoming/ \
  --advanced-filter subject StringEndsWith .csv .xlsx \
  --max-events-per-batch 1 --max-delivery-attempts 30 --event-ttl 1440 \
  --deadletter-identity systemassigned \
  --deadletter-identity-endpoint "$storage_id/blobServices/default/containers/hr-deadletter" \
  --output none
echo "Event Grid now delivers new .csv files in hr-incoming to $AZURE_FUNCTION_NAME"

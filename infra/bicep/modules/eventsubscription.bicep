// Blob-created events of the incoming container (.csv only) to the Function's blob extension
// webhook, dead-lettered to a container when delivery keeps failing. Deployed only once the code
// runs: the webhook's blobs_extension key exists from then on, and listKeys() below reads it when
// this module is deployed (main.bicep deploys it only with subscribeEvents).

@description('System topic name (modules/eventgrid.bicep).')
param topicName string

@description('HR storage account name (the event source and the dead-letter destination).')
param storageName string

@description('Container files are dropped in.')
param incomingContainer string

@description('Container for undeliverable events.')
param deadLetterContainer string

@description('Function app name.')
param functionAppName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: topicName
}

resource webhookSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: topic
  name: 'hr-incoming-csv'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.hr_file_arrived&code=${listKeys('${functionApp.id}/host/default', '2024-04-01').systemKeys.blobs_extension}'
        maxEventsPerBatch: 1
      }
    }
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '/blobServices/default/containers/${incomingContainer}/'
      isSubjectCaseSensitive: false
      // CSV files and Excel workbooks (advanced string filters compare without case)
      advancedFilters: [
        { operatorType: 'StringEndsWith', key: 'subject', values: ['.csv', '.xlsx'] }
      ]
    }
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
    deadLetterWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: { resourceId: storage.id, blobContainerName: deadLetterContainer }
      }
    }
  }
}

@description('Subscription name.')
output name string = webhookSubscription.name

// The HR storage account's event source: an Event Grid system topic with its own identity, and the
// one permission that identity has: writing undeliverable events to the dead-letter container.
// The subscription to the Function's webhook is modules/eventsubscription.bicep (it needs the key).

@description('System topic name.')
param name string

@description('Azure region.')
param location string

@description('Tags.')
param tags object

@description('HR storage account name (the event source).')
param storageName string

@description('Container for undeliverable events.')
param deadLetterContainer string

var blobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageName
}

resource deadLetter 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${storageName}/default/${deadLetterContainer}'
}

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' }
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

// Event Grid writes undeliverable events to the dead-letter container, and nowhere else.
resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: deadLetter
  name: guid(deadLetter.id, topic.id, blobDataContributor)
  properties: {
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributor)
  }
}

@description('System topic name.')
output name string = topic.name

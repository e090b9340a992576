// Every permission of the Function's identity, each the narrowest built-in role at the narrowest
// scope that works, and why.

@description('Principal (object) id of the Function\'s user-assigned identity.')
param principalId string

@description('HR storage account name.')
param hrStorageName string

@description('Host storage account name.')
param hostStorageName string

@description('Key Vault name.')
param vaultName string

@description('Application Insights name.')
param appInsightsName string

var roles = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageAccountContributor: '17d1049b-9a84-46fb-8f53-869881c3d3ab'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource hrStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hrStorageName
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// HR storage, blobs: the blob trigger's identity-based connection requires Storage Blob Data Owner
// (as documented for the trigger); the code itself reads, writes, leases and deletes blobs in the
// HR containers. Scoped to the HR account only.
resource hrBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: hrStorage
  name: guid(hrStorage.id, principalId, roles.blobDataOwner)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataOwner)
  }
}

// HR storage, queues: the blob trigger keeps its poison queue (webjobs-blobtrigger-poison) in the
// trigger's account (HR_STORAGE__queueServiceUri).
resource hrQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: hrStorage
  name: guid(hrStorage.id, principalId, roles.queueDataContributor)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataContributor)
  }
}

// Host storage (AzureWebJobsStorage, no HR data): the roles the Functions docs list for an
// identity-based host connection with a blob trigger. Blob Data Owner: host keys, timer schedule
// monitor, singleton locks, blob receipts and the Flex deployment package. Queue Data Contributor:
// the blob extension's Event Grid webhook writes every event to the azure-webjobs-blobtrigger-<host
// id> queue in this account before the function runs (without it every delivery fails with 403).
// Storage Account Contributor: listed by the docs for the blob trigger on this connection. Table
// Data Contributor: the host's diagnostic events (AzureWebJobsStorage__tableServiceUri).
resource hostBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: hostStorage
  name: guid(hostStorage.id, principalId, roles.blobDataOwner)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataOwner)
  }
}

resource hostQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: hostStorage
  name: guid(hostStorage.id, principalId, roles.queueDataContributor)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataContributor)
  }
}

resource hostTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: hostStorage
  name: guid(hostStorage.id, principalId, roles.tableDataContributor)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.tableDataContributor)
  }
}

resource hostAccount 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: hostStorage
  name: guid(hostStorage.id, principalId, roles.storageAccountContributor)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageAccountContributor)
  }
}

// Key Vault: read the app's secret (or certificate, read through its secret). Secrets User is
// read-only; scoped to this vault, which holds nothing else.
resource vaultSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, principalId, roles.keyVaultSecretsUser)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
  }
}

// Application Insights with local auth off accepts telemetry only from principals with this role.
resource telemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: appInsights
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

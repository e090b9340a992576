// A storage account reachable only with Entra ID: shared keys off, TLS 1.2, HTTPS only, no public
// blobs, soft delete and versioning, and (when retentionDays > 0) a lifecycle rule for retention.

@description('Storage account name (3-24 lower-case letters and digits).')
param name string

@description('Azure region.')
param location string

@description('Tags.')
param tags object

@description('Containers to create.')
param containers array

@description('Delete blobs under retentionPrefixes this many days after their last change; 0: no rule.')
param retentionDays int

@description('Blob name prefixes ("<container>/") the retention rule applies to.')
param retentionPrefixes array

@description('Subnet for private endpoints (blob, queue); empty: public endpoint with Azure services allowed.')
param privateEndpointSubnetId string

@description('Private DNS zone ids for the endpoints: {blob: id, queue: id}.')
param privateDnsZoneIds object

var private = !empty(privateEndpointSubnetId)
var endpointServices = private ? ['blob', 'queue'] : []

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206: zone-redundant (ZRS) on purpose: geo-replication would copy HR data to a second region
  // checkov:skip=CKV_AZURE_35: public mode allows the network (Flex has no fixed outbound IPs) but only Entra ID callers with a role; enablePrivateNetworking denies it
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_ZRS' }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false // identity only: no account keys, no SAS signed with them
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    publicNetworkAccess: private ? 'Disabled' : 'Enabled'
    networkAcls: {
      // Event Grid (system topic) and Azure Monitor reach the account as trusted services.
      bypass: 'AzureServices'
      defaultAction: private ? 'Deny' : 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: { enabled: true, keyType: 'Account' }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 14 }
    containerDeleteRetentionPolicy: { enabled: true, days: 14 }
    isVersioningEnabled: true
  }
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in containers: {
    parent: blobService
    name: container
    properties: { publicAccess: 'None' }
  }
]

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (retentionDays > 0) {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'hr-retention'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: ['blockBlob'], prefixMatch: retentionPrefixes }
            actions: {
              baseBlob: { delete: { daysAfterModificationGreaterThan: retentionDays } }
              version: { delete: { daysAfterCreationGreaterThan: 30 } }
            }
          }
        }
        {
          name: 'old-versions'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: ['blockBlob'] }
            actions: { version: { delete: { daysAfterCreationGreaterThan: 30 } } }
          }
        }
      ]
    }
  }
}

resource endpoints 'Microsoft.Network/privateEndpoints@2023-11-01' = [
  for service in endpointServices: {
    name: 'pe-${name}-${service}'
    location: location
    tags: tags
    properties: {
      subnet: { id: privateEndpointSubnetId }
      privateLinkServiceConnections: [
        { name: service, properties: { privateLinkServiceId: account.id, groupIds: [service] } }
      ]
    }
  }
]

resource dnsGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = [
  for (service, i) in endpointServices: {
    parent: endpoints[i]
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [{ name: service, properties: { privateDnsZoneId: privateDnsZoneIds[service] } }]
    }
  }
]

@description('Account name.')
output name string = account.name
@description('Blob endpoint (https://<name>.blob.<suffix>/).')
output blobEndpoint string = account.properties.primaryEndpoints.blob
@description('Queue endpoint.')
output queueEndpoint string = account.properties.primaryEndpoints.queue
@description('Table endpoint.')
output tableEndpoint string = account.properties.primaryEndpoints.table

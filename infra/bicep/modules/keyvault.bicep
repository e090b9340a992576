// The vault for the app's secret or certificate: RBAC authorisation (no access policies), purge
// protection and soft delete. The secret's value is set after deployment (docs/deploy.md).

@description('Vault name.')
param name string

@description('Azure region.')
param location string

@description('Tags.')
param tags object

@description('Tenant of the vault.')
param tenantId string

@description('Subnet for a private endpoint; empty: public endpoint with Azure services allowed.')
param privateEndpointSubnetId string

@description('Private DNS zone id for privatelink.vaultcore.azure.net.')
param privateDnsZoneId string

var private = !empty(privateEndpointSubnetId)

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: public mode allows the network (Flex has no fixed outbound IPs) but only principals with an RBAC role; enablePrivateNetworking denies it
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enablePurgeProtection: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    publicNetworkAccess: private ? 'Disabled' : 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: private ? 'Deny' : 'Allow'
    }
  }
}

resource endpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = if (private) {
  name: 'pe-${name}'
  location: location
  tags: tags
  properties: {
    subnet: { id: privateEndpointSubnetId }
    privateLinkServiceConnections: [
      { name: 'vault', properties: { privateLinkServiceId: vault.id, groupIds: ['vault'] } }
    ]
  }
}

resource dnsGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = if (private) {
  parent: endpoint
  name: 'default'
  properties: { privateDnsZoneConfigs: [{ name: 'vault', properties: { privateDnsZoneId: privateDnsZoneId } }] }
}

@description('Vault name.')
output name string = vault.name
@description('Vault URI (HR_KEY_VAULT_URL).')
output uri string = vault.properties.vaultUri

// Optional network isolation: a VNet with a subnet for the Function's outbound traffic (VNet
// integration, delegated to Flex Consumption) and one for private endpoints, with the private
// DNS zones the endpoints need in this cloud.

@description('VNet name.')
param name string

@description('Azure region.')
param location string

@description('Tags.')
param tags object

// blob, queue, vault: in this order (the outputs index them).
var zones = [
  'privatelink.blob.${environment().suffixes.storage}'
  'privatelink.queue.${environment().suffixes.storage}'
  'privatelink${replace(environment().suffixes.keyvaultDns, 'vault', 'vaultcore')}'
]

resource nsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: 'nsg-${name}'
  location: location
  tags: tags
  properties: { securityRules: [] } // the default rules: VNet traffic in, nothing from the internet
}

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: { addressPrefixes: ['10.42.0.0/16'] }
    subnets: [
      {
        name: 'function'
        properties: {
          addressPrefix: '10.42.1.0/24'
          networkSecurityGroup: { id: nsg.id }
          delegations: [{ name: 'flex', properties: { serviceName: 'Microsoft.App/environments' } }]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: '10.42.2.0/24'
          networkSecurityGroup: { id: nsg.id }
          privateEndpointNetworkPolicies: 'Enabled'
        }
      }
    ]
  }
}

resource dnsZones 'Microsoft.Network/privateDnsZones@2024-06-01' = [
  for zone in zones: {
    name: zone
    location: 'global'
    tags: tags
  }
]

resource dnsLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [
  for (zone, i) in zones: {
    parent: dnsZones[i]
    name: 'link-${name}'
    location: 'global'
    tags: tags
    properties: { registrationEnabled: false, virtualNetwork: { id: vnet.id } }
  }
]

@description('Subnet for VNet integration.')
output integrationSubnetId string = vnet.properties.subnets[0].id
@description('Subnet for private endpoints.')
output privateEndpointSubnetId string = vnet.properties.subnets[1].id
@description('DNS zone ids for storage endpoints.')
output storageDnsZoneIds object = { blob: dnsZones[0].id, queue: dnsZones[1].id }
@description('DNS zone id for the vault endpoint.')
output vaultDnsZoneId string = dnsZones[2].id

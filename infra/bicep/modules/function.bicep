// The Function app on a Flex Consumption plan, running as the user-assigned identity. No keys:
// the host storage, the deployment package and the HR storage are all reached with the identity.
// The deployment package: azd and Core Tools hand it to the publish API with the deployer's own
// Azure sign-in; the platform writes it to the container below as this identity (Blob Data Owner on
// the host account), so the deployer needs no storage role.
// Flex Consumption sets the runtime itself: FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION
// and WEBSITE_RUN_FROM_PACKAGE are deliberately absent.

@description('Function app name.')
param name string

@description('Azure region.')
param location string

@description('Tags.')
param tags object

@description('Python version.')
param pythonVersion string

@description('Most instances the app scales out to.')
param maximumInstanceCount int

@description('Memory of each instance (MB).')
param instanceMemoryMB int

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Host storage blob endpoint (the deployment package container is there).')
param hostBlobEndpoint string

@description('Subnet for VNet integration; empty: none.')
param integrationSubnetId string

@description('App settings (names from hrconnector_core/settings.py).')
param appSettings object

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: a batch workload: a zone outage delays files (Event Grid retries, the timer sweeps), loses none; Flex zone redundancy is regional
  name: 'plan-${name}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid delivers to the blobs_extension webhook over the internet; the webhook needs its system key
  // checkov:skip=CKV_AZURE_17: Event Grid presents no client certificate
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero; files wait safely in storage until an instance starts
  // checkov:skip=CKV_AZURE_213: no HTTP API to probe: the only HTTP entry is the Event Grid webhook
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'hr-function' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false // the only HTTP entry is Event Grid's webhook, which authenticates with the extension key
    virtualNetworkSubnetId: empty(integrationSubnetId) ? null : integrationSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostBlobEndpoint}app-package'
          authentication: { type: 'UserAssignedIdentity', userAssignedIdentityResourceId: identityId }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: maximumInstanceCount, instanceMemoryMB: instanceMemoryMB }
      runtime: { name: 'python', version: pythonVersion }
    }
  }
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // These checks read App Service site config; this resource holds only app settings, and on Flex Consumption:
  // checkov:skip=CKV_AZURE_13: App Service Authentication would block Event Grid's webhook calls, which carry the extension key
  // checkov:skip=CKV_AZURE_63: HTTP logging is an App Service web-server feature; telemetry goes to Application Insights
  // checkov:skip=CKV_AZURE_65: detailed error pages are an App Service web-server feature; not used by Functions
  // checkov:skip=CKV_AZURE_66: failed request tracing is an App Service web-server feature; not used by Functions
  // checkov:skip=CKV_AZURE_80: no .NET: the app runs Python
  // checkov:skip=CKV_AZURE_88: Flex Consumption has no Azure Files content share
  // checkov:skip=CKV_AZURE_222: see the site: public access is needed for Event Grid
  parent: site
  name: 'appsettings'
  properties: appSettings
}

resource basicPublishingFtp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: { allow: false }
}

resource basicPublishingScm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: { allow: false }
}

@description('Function app name.')
output name string = site.name

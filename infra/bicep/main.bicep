// The HR connector Function: identity only, least privilege. Deploy with `azd up` (azure.yaml) or
// `az deployment group create -g <rg> -f infra/bicep/main.bicep -p infra/bicep/<copy of main.bicepparam>`
// (the copy stays beside main.bicep: its `using 'main.bicep'` is relative to its own folder).
// The same system as infra/terraform; app setting names are those of hrconnector_core/settings.py
// (tests/test_infra.py checks both templates against it).
targetScope = 'resourceGroup'

@description('Short name of this environment (azd sets it); part of every resource name.')
@minLength(2)
@maxLength(12)
param environmentName string

@description('Azure region of every resource. Flex Consumption must be available there.')
param location string = resourceGroup().location

@description('Python version of the Function (the version CI tests).')
@allowed(['3.11'])
param pythonVersion string = '3.11'

@description('Microsoft cloud of the HR connector: commercial, gcc, gcchigh or dod.')
@allowed(['commercial', 'gcc', 'gcchigh', 'dod'])
param cloud string = 'commercial'

@description('Entra tenant the HR connector (Purview) is in: the app signs in there. Default: this subscription\'s tenant.')
param tenantId string = subscription().tenantId

@description('Client (app) id of the Entra app registered for the HR connector (a GUID).')
@minLength(36)
@maxLength(36)
param appId string

@description('The connectors, as the HR_CONNECTORS app setting: {"<folder>": {"job_id": "<job id>", ...}}. A connector may take its files from a SharePoint or OneDrive folder: source_site (e.g. contoso.sharepoint.com/sites/HR), source_library (default Documents), source_folder (default the library\'s root), source_move (default true), source_copy_existing (default false); the site needs a grant (docs/deploy.md). See docs/function.md.')
param connectors object

@description('How the app signs in: key-vault-secret (secret in Key Vault), key-vault-certificate, or federated (no secret).')
@allowed(['key-vault-secret', 'key-vault-certificate', 'federated'])
param credential string = 'key-vault-secret'

@description('Name of the Key Vault secret (or certificate) holding the app credential. The value is put in the vault after deployment, never in a template.')
param secretName string = 'hr-connector-app-secret'

@description('NCRONTAB schedule of the timer (UTC): sweep, profile refresh, retention.')
param schedule string = '0 */15 * * * *'

@description('NCRONTAB schedule (UTC) of the SharePoint/OneDrive source timer: how often each connector with a source_site asks Microsoft Graph for new files in its folder.')
param sourceSchedule string = '0 */5 * * * *'

@description('Records per upload call.')
@minValue(1)
@maxValue(100000)
param recordsPerCall int = 5000

@description('upload-valid (set invalid rows aside) or reject-file (upload nothing when a row is invalid).')
@allowed(['upload-valid', 'reject-file'])
param policy string = 'upload-valid'

@description('Days processed files, reports and state are kept (the code and a lifecycle rule both apply it).')
@minValue(1)
@maxValue(3650)
param retentionDays int = 90

@description('Days after which the latest employee-profile file is uploaded again (profiles expire after 30).')
@minValue(1)
@maxValue(29)
param profileRefreshDays int = 14

@description('A file is expected from the HR system at least this often (hours); the timer alerts (hr-export-overdue) when the last is older. 0: no check. A connector in `connectors` may set its own expected_every_hours.')
@minValue(0)
@maxValue(8760)
param expectedEveryHours int = 0

@description('Private endpoints for the HR storage account and Key Vault, and VNet integration of the Function.')
param enablePrivateNetworking bool = false

@description('Create the Event Grid subscription. Needs the deployed code (its blobs_extension key): false on the first deployment, true after `azd deploy` (the postdeploy hook does it).')
param subscribeEvents bool = false

@description('E-mail address for the alerts; empty: alerts without notification.')
param alertEmail string = ''

@description('Tags for every resource.')
param tags object = {}

@description('Key Vault name (3-24 characters); empty: kv-hr-<unique suffix>. A deleted vault keeps its name for 90 days (purge protection): recover it first (docs/deploy.md) or choose another name here.')
@maxLength(24)
param keyVaultName string = ''

@description('Most instances Flex Consumption scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance (MB).')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

var suffix = uniqueString(subscription().id, resourceGroup().id, environmentName)
var allTags = union(tags, { 'azd-env-name': environmentName, workload: 'hr-connector' })
var containers = {
  incoming: 'hr-incoming'
  processed: 'hr-processed'
  reports: 'hr-reports'
  failed: 'hr-failed'
  state: 'hr-state'
  deadLetter: 'hr-deadletter'
}
var functionName = 'func-hr-${environmentName}-${suffix}'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-hr-${environmentName}-${suffix}'
  location: location
  tags: allTags
}

// Each connector's job id is a GUID (36 characters), as in Terraform, and its SharePoint/OneDrive
// source fields have their types (booleans are booleans): checked by ARM before the Function is
// configured (modules/connector.bicep deploys nothing). An absent field gets the code's default.
module connectorChecks 'modules/connector.bicep' = [for connector in items(connectors): {
  name: 'connector-${uniqueString(connector.key)}'
  params: {
    folder: connector.key
    jobId: connector.value.job_id
    sourceSite: contains(connector.value, 'source_site') ? connector.value.source_site : ''
    sourceLibrary: contains(connector.value, 'source_library') ? connector.value.source_library : 'Documents'
    sourceFolder: contains(connector.value, 'source_folder') ? connector.value.source_folder : ''
    sourceMove: contains(connector.value, 'source_move') ? connector.value.source_move : true
    sourceCopyExisting: contains(connector.value, 'source_copy_existing') ? connector.value.source_copy_existing : false
  }
}]

module network 'modules/network.bicep' = if (enablePrivateNetworking) {
  name: 'network'
  params: {
    name: 'vnet-hr-${environmentName}-${suffix}'
    location: location
    tags: allTags
  }
}

// HR data: the files as they arrive, processed, rejected rows, reports, state.
module hrStorage 'modules/storage.bicep' = {
  name: 'hr-storage'
  params: {
    name: take('sthr${suffix}', 24)
    location: location
    tags: allTags
    containers: [
      containers.incoming
      containers.processed
      containers.reports
      containers.failed
      containers.state
      containers.deadLetter
    ]
    retentionDays: retentionDays
    retentionPrefixes: ['${containers.processed}/', '${containers.reports}/', '${containers.deadLetter}/']
    privateEndpointSubnetId: enablePrivateNetworking ? network!.outputs.privateEndpointSubnetId : ''
    privateDnsZoneIds: enablePrivateNetworking ? network!.outputs.storageDnsZoneIds : {}
  }
}

// The Functions host's own storage and the deployment package; no HR data.
module hostStorage 'modules/storage.bicep' = {
  name: 'host-storage'
  params: {
    name: take('stfn${suffix}', 24)
    location: location
    tags: allTags
    containers: ['app-package']
    retentionDays: 0
    retentionPrefixes: []
    privateEndpointSubnetId: ''
    privateDnsZoneIds: {}
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'key-vault'
  params: {
    name: empty(keyVaultName) ? take('kv-hr-${suffix}', 24) : keyVaultName
    location: location
    tags: allTags
    tenantId: subscription().tenantId
    privateEndpointSubnetId: enablePrivateNetworking ? network!.outputs.privateEndpointSubnetId : ''
    privateDnsZoneId: enablePrivateNetworking ? network!.outputs.vaultDnsZoneId : ''
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    environmentName: environmentName
    suffix: suffix
    location: location
    tags: allTags
    alertEmail: alertEmail
  }
}

module function 'modules/function.bicep' = {
  name: 'function'
  params: {
    name: functionName
    location: location
    tags: allTags
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    identityId: identity.id
    hostBlobEndpoint: hostStorage.outputs.blobEndpoint
    integrationSubnetId: enablePrivateNetworking ? network!.outputs.integrationSubnetId : ''
    appSettings: {
      // The service-URI form: __accountName assumes the commercial cloud's endpoints (documented as
      // invalid in sovereign clouds); the endpoints come from this cloud's storage suffix.
      AzureWebJobsStorage__blobServiceUri: hostStorage.outputs.blobEndpoint
      AzureWebJobsStorage__queueServiceUri: hostStorage.outputs.queueEndpoint
      AzureWebJobsStorage__tableServiceUri: hostStorage.outputs.tableEndpoint
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identity.properties.clientId
      HR_STORAGE__blobServiceUri: hrStorage.outputs.blobEndpoint
      HR_STORAGE__queueServiceUri: hrStorage.outputs.queueEndpoint
      HR_STORAGE__credential: 'managedidentity'
      HR_STORAGE__clientId: identity.properties.clientId
      HR_INCOMING_CONTAINER: containers.incoming
      HR_PROCESSED_CONTAINER: containers.processed
      HR_REPORTS_CONTAINER: containers.reports
      HR_FAILED_CONTAINER: containers.failed
      HR_STATE_CONTAINER: containers.state
      HR_CONNECTORS: string(connectors)
      HR_TENANT_ID: tenantId
      HR_APP_ID: appId
      HR_CREDENTIAL: credential
      HR_KEY_VAULT_URL: vault.outputs.uri
      HR_SECRET_NAME: secretName
      HR_CLOUD: cloud
      HR_RECORDS_PER_CALL: string(recordsPerCall)
      HR_POLICY: policy
      HR_SCHEDULE: schedule
      HR_SOURCE_SCHEDULE: sourceSchedule
      HR_SWEEP_AFTER_MINUTES: '5'
      HR_PROFILE_REFRESH_DAYS: string(profileRefreshDays)
      HR_PROFILE_STALE_DAYS: '30'
      HR_RETENTION_DAYS: string(retentionDays)
      HR_EXPECTED_EVERY_HOURS: string(expectedEveryHours)
      AZURE_CLIENT_ID: identity.properties.clientId
      APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identity.properties.clientId}'
    }
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    principalId: identity.properties.principalId
    hrStorageName: hrStorage.outputs.name
    hostStorageName: hostStorage.outputs.name
    vaultName: vault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

module events 'modules/eventgrid.bicep' = {
  name: 'event-grid'
  params: {
    name: 'evgt-hr-${environmentName}-${suffix}'
    location: location
    tags: allTags
    storageName: hrStorage.outputs.name
    deadLetterContainer: containers.deadLetter
  }
}

// A module of its own: ARM evaluates listKeys() in a conditional resource even when the condition
// is false, which would fail before the code (and so the blobs_extension key) exists. A module
// that is not deployed is not evaluated.
module eventSubscription 'modules/eventsubscription.bicep' = if (subscribeEvents) {
  name: 'event-subscription'
  dependsOn: [function, events]
  params: {
    topicName: events.outputs.name
    storageName: hrStorage.outputs.name
    incomingContainer: containers.incoming
    deadLetterContainer: containers.deadLetter
    functionAppName: functionName
  }
}

@description('Name of the Function app (azd deploys the code to it).')
output AZURE_FUNCTION_NAME string = function.outputs.name
@description('Resource group (azd).')
output AZURE_RESOURCE_GROUP string = resourceGroup().name
@description('HR storage account: drop files in its hr-incoming container.')
output HR_STORAGE_ACCOUNT string = hrStorage.outputs.name
@description('Key Vault to put the app secret in.')
output KEY_VAULT_NAME string = vault.outputs.name
@description('For a federated credential on the app: issuer, subject (the identity) and audience. The issuer is the tenant of the identity, i.e. of this subscription, whatever tenantId is: the app registration must be in that tenant (multi-tenant and consented in tenantId when that differs).')
output FEDERATED_CREDENTIAL object = {
  issuer: '${environment().authentication.loginEndpoint}${subscription().tenantId}/v2.0'
  subject: identity.properties.principalId
  audience: cloud == 'gcchigh' || cloud == 'dod' ? 'api://AzureADTokenExchangeUSGov' : 'api://AzureADTokenExchange'
}
@description('Object (principal) id of the Function\'s managed identity: the service principal that gets the Microsoft Graph permission Sites.Selected (docs/deploy.md).')
output AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
@description('Client (application) id of the Function\'s managed identity: the application a SharePoint site permission names (docs/deploy.md).')
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.properties.clientId

// Example parameters. Copy it BESIDE main.bicep (its `using 'main.bicep'` is resolved from this
// file's folder), fill in the app id and the connector's job id, and deploy from the repository root:
//   cp infra/bicep/main.bicepparam infra/bicep/hrprod.bicepparam
//   az deployment group create -g <rg> -f infra/bicep/main.bicep -p infra/bicep/hrprod.bicepparam
using 'main.bicep'

param environmentName = 'hrprod'
param cloud = 'commercial'
param appId = '00000000-0000-0000-0000-000000000000' // the HR connector's Entra app (client) id
param connectors = {
  main: {
    job_id: '00000000-0000-0000-0000-000000000000' // from the HR connector's page in the Purview portal
    // Files from a SharePoint or OneDrive folder too (grant: docs/deploy.md):
    // source_site: 'contoso.sharepoint.com/sites/HR'
    // source_library: 'Documents'
    // source_folder: 'Exports/Leavers'
  }
}
param credential = 'key-vault-secret'
param secretName = 'hr-connector-app-secret'
param schedule = '0 */15 * * * *'
param sourceSchedule = '0 */5 * * * *' // the SharePoint/OneDrive source's timer (connectors with source_site)
param retentionDays = 90
param enablePrivateNetworking = false
param keyVaultName = '' // empty: kv-hr-<suffix>; after a teardown, recover the old vault or name a new one
param subscribeEvents = false // set to true in this file once the code is deployed, then deploy again
param alertEmail = ''

// Example parameters: copy, fill in the app id and the connector's job id, deploy with
// az deployment group create -g <rg> -f main.bicep -p main.bicepparam
using 'main.bicep'

param environmentName = 'hrprod'
param cloud = 'commercial'
param appId = '00000000-0000-0000-0000-000000000000' // the HR connector's Entra app (client) id
param connectors = {
  main: {
    job_id: '00000000-0000-0000-0000-000000000000' // from the HR connector's page in the Purview portal
  }
}
param credential = 'key-vault-secret'
param secretName = 'hr-connector-app-secret'
param schedule = '0 */15 * * * *'
param retentionDays = 90
param enablePrivateNetworking = false
param subscribeEvents = false // true once the code is deployed (azd's postdeploy hook does it)
param alertEmail = ''

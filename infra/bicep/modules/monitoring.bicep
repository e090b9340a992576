// Log Analytics + Application Insights with local (key) authentication off, and the alerts an
// admin needs: a failed run, a profile connector not refreshed for 20 days, a timer that stopped.

@description('Environment name, part of resource names.')
param environmentName string

@description('Unique suffix of resource names.')
param suffix string

@description('Azure region.')
param location string

@description('Tags.')
param tags object

@description('E-mail address for the alerts; empty: alerts without notification.')
param alertEmail string

resource workspace 'Microsoft.OperationalInsights/workspaces@2025-07-01' = {
  name: 'log-hr-${environmentName}-${suffix}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 90
    features: { disableLocalAuth: true }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-hr-${environmentName}-${suffix}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true // telemetry only with Entra ID (Monitoring Metrics Publisher)
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-hr-${environmentName}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'hrconnector'
    enabled: true
    emailReceivers: [{ name: 'admin', emailAddress: alertEmail, useCommonAlertSchema: true }]
  }
}

var alerts = [
  {
    name: 'hr-run-failed'
    description: 'A file could not be uploaded (it is in hr-failed with its report), or scheduled work or the SharePoint/OneDrive source failed.'
    severity: 1
    query: 'requests | where operation_Name in ("hr_file_arrived", "hr_schedule", "hr_graph_source") and success == false'
    operator: 'GreaterThan'
    window: 'PT15M'
    frequency: 'PT5M'
  }
  {
    name: 'hr-profile-not-refreshed'
    description: 'An employee-profile connector has not been refreshed for 20 days (profiles expire after 30).'
    severity: 1
    query: 'traces | where tostring(customDimensions["hr.alert"]) == "profile-not-refreshed"'
    operator: 'GreaterThan'
    window: 'PT1H'
    frequency: 'PT1H'
  }
  {
    name: 'hr-export-overdue'
    description: 'A connector with an expected cadence has had no file for longer than that: the HR export may have stopped.'
    severity: 2
    query: 'traces | where tostring(customDimensions["hr.alert"]) == "export-overdue"'
    operator: 'GreaterThan'
    window: 'PT1H'
    frequency: 'PT1H'
  }
  {
    name: 'hr-timer-stopped'
    description: 'The timer has not run for 6 hours: no sweep, no profile refresh, no retention.'
    severity: 2
    query: 'requests | where operation_Name == "hr_schedule"'
    operator: 'LessThan'
    window: 'PT6H'
    frequency: 'PT1H'
  }
]

resource rules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for alert in alerts: {
    name: '${alert.name}-${environmentName}'
    location: location
    tags: tags
    properties: {
      displayName: alert.name
      description: alert.description
      severity: alert.severity
      enabled: true
      scopes: [appInsights.id]
      evaluationFrequency: alert.frequency
      windowSize: alert.window
      criteria: {
        allOf: [
          {
            query: alert.query
            timeAggregation: 'Count'
            operator: alert.operator
            threshold: alert.operator == 'LessThan' ? 1 : 0
            failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
          }
        ]
      }
      actions: { actionGroups: empty(alertEmail) ? [] : [actionGroup.id] }
    }
  }
]

@description('Application Insights connection string (not a secret: ingestion needs Entra ID).')
output connectionString string = appInsights.properties.ConnectionString
@description('Application Insights name.')
output appInsightsName string = appInsights.name

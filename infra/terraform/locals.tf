locals {
  suffix    = substr(sha1("${data.azurerm_subscription.current.id}/${var.resource_group_name}/${var.environment_name}"), 0, 13)
  tenant_id = var.tenant_id != "" ? var.tenant_id : data.azurerm_subscription.current.tenant_id
  tags      = merge(var.tags, { "azd-env-name" = var.environment_name, workload = "hr-connector" })

  # GCC runs in the commercial Azure cloud; GCC High and DoD in Azure Government.
  cloud_environment       = contains(["gcchigh", "dod"], var.cloud) ? "usgovernment" : "public"
  token_exchange_audience = contains(["gcchigh", "dod"], var.cloud) ? "api://AzureADTokenExchangeUSGov" : "api://AzureADTokenExchange"

  containers = {
    incoming    = "hr-incoming"
    processed   = "hr-processed"
    reports     = "hr-reports"
    failed      = "hr-failed"
    state       = "hr-state"
    dead_letter = "hr-deadletter"
  }

  function_name = "func-hr-${var.environment_name}-${local.suffix}"
  private       = var.enable_private_networking

  key_vault_name = var.key_vault_name != "" ? var.key_vault_name : substr("kv-hr-${local.suffix}", 0, 24)

  # Names from hrconnector_core/settings.py. APPLICATIONINSIGHTS_CONNECTION_STRING is set through
  # site_config (the provider owns that setting).
  app_settings = {
    # The provider always adds an AzureWebJobsStorage connection string with an empty key to a Flex
    # Consumption app; with shared keys off the host then cannot start. An empty value makes the host
    # use the identity-based AzureWebJobsStorage__* settings below (as the official Flex Terraform
    # sample does until the provider stops injecting it).
    AzureWebJobsStorage = ""
    # The service-URI form: __accountName is documented as invalid in sovereign clouds.
    AzureWebJobsStorage__blobServiceUri       = azurerm_storage_account.host.primary_blob_endpoint
    AzureWebJobsStorage__queueServiceUri      = azurerm_storage_account.host.primary_queue_endpoint
    AzureWebJobsStorage__tableServiceUri      = azurerm_storage_account.host.primary_table_endpoint
    AzureWebJobsStorage__credential           = "managedidentity"
    AzureWebJobsStorage__clientId             = azurerm_user_assigned_identity.function.client_id
    HR_STORAGE__blobServiceUri                = azurerm_storage_account.hr.primary_blob_endpoint
    HR_STORAGE__queueServiceUri               = azurerm_storage_account.hr.primary_queue_endpoint
    HR_STORAGE__credential                    = "managedidentity"
    HR_STORAGE__clientId                      = azurerm_user_assigned_identity.function.client_id
    HR_INCOMING_CONTAINER                     = local.containers.incoming
    HR_PROCESSED_CONTAINER                    = local.containers.processed
    HR_REPORTS_CONTAINER                      = local.containers.reports
    HR_FAILED_CONTAINER                       = local.containers.failed
    HR_STATE_CONTAINER                        = local.containers.state
    HR_CONNECTORS                             = jsonencode(var.connectors)
    HR_TENANT_ID                              = local.tenant_id
    HR_APP_ID                                 = var.app_id
    HR_CREDENTIAL                             = var.credential
    HR_KEY_VAULT_URL                          = azurerm_key_vault.hr.vault_uri
    HR_SECRET_NAME                            = var.secret_name
    HR_CLOUD                                  = var.cloud
    HR_RECORDS_PER_CALL                       = tostring(var.records_per_call)
    HR_POLICY                                 = var.policy
    HR_SCHEDULE                               = var.schedule
    HR_SOURCE_SCHEDULE                        = var.source_schedule
    HR_SWEEP_AFTER_MINUTES                    = "5"
    HR_PROFILE_REFRESH_DAYS                   = tostring(var.profile_refresh_days)
    HR_PROFILE_STALE_DAYS                     = "30"
    HR_RETENTION_DAYS                         = tostring(var.retention_days)
    HR_EXPECTED_EVERY_HOURS                   = tostring(var.expected_every_hours)
    AZURE_CLIENT_ID                           = azurerm_user_assigned_identity.function.client_id
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING = "Authorization=AAD;ClientId=${azurerm_user_assigned_identity.function.client_id}"
  }

  alerts = {
    "hr-run-failed" = {
      description = "A file could not be uploaded (it is in hr-failed with its report), or scheduled work or the SharePoint/OneDrive source failed."
      severity    = 1
      query       = "requests | where operation_Name in (\"hr_file_arrived\", \"hr_schedule\", \"hr_graph_source\") and success == false"
      operator    = "GreaterThan"
      threshold   = 0
      window      = "PT15M"
      frequency   = "PT5M"
    }
    "hr-profile-not-refreshed" = {
      description = "An employee-profile connector has not been refreshed for 20 days (profiles expire after 30)."
      severity    = 1
      query       = "traces | where tostring(customDimensions[\"hr.alert\"]) == \"profile-not-refreshed\""
      operator    = "GreaterThan"
      threshold   = 0
      window      = "PT1H"
      frequency   = "PT1H"
    }
    "hr-export-overdue" = {
      description = "A connector with an expected cadence has had no file for longer than that: the HR export may have stopped."
      severity    = 2
      query       = "traces | where tostring(customDimensions[\"hr.alert\"]) == \"export-overdue\""
      operator    = "GreaterThan"
      threshold   = 0
      window      = "PT1H"
      frequency   = "PT1H"
    }
    "hr-timer-stopped" = {
      description = "The timer has not run for 6 hours: no sweep, no profile refresh, no retention."
      severity    = 2
      query       = "requests | where operation_Name == \"hr_schedule\""
      operator    = "LessThan"
      threshold   = 1
      window      = "PT6H"
      frequency   = "PT1H"
    }
  }

  role = {
    blob_data_owner              = "Storage Blob Data Owner"
    blob_data_contributor        = "Storage Blob Data Contributor"
    queue_data_contributor       = "Storage Queue Data Contributor"
    table_data_contributor       = "Storage Table Data Contributor"
    storage_account_contributor  = "Storage Account Contributor"
    key_vault_secrets_user       = "Key Vault Secrets User"
    monitoring_metrics_publisher = "Monitoring Metrics Publisher"
  }
}

data "azurerm_subscription" "current" {}

data "azurerm_resource_group" "hr" {
  name = var.resource_group_name
}

resource "azurerm_user_assigned_identity" "function" {
  name                = "id-hr-${var.environment_name}-${local.suffix}"
  resource_group_name = data.azurerm_resource_group.hr.name
  location            = var.location
  tags                = local.tags
}

# -- network (optional) ---------------------------------------------------------------------------
resource "azurerm_network_security_group" "hr" {
  count               = local.private ? 1 : 0
  name                = "nsg-hr-${var.environment_name}-${local.suffix}"
  resource_group_name = data.azurerm_resource_group.hr.name
  location            = var.location
  tags                = local.tags
  # The default rules: VNet traffic in, nothing from the internet.
}

resource "azurerm_virtual_network" "hr" {
  count               = local.private ? 1 : 0
  name                = "vnet-hr-${var.environment_name}-${local.suffix}"
  resource_group_name = data.azurerm_resource_group.hr.name
  location            = var.location
  address_space       = ["10.42.0.0/16"]
  tags                = local.tags
}

resource "azurerm_subnet" "function" {
  count                = local.private ? 1 : 0
  name                 = "function"
  resource_group_name  = data.azurerm_resource_group.hr.name
  virtual_network_name = azurerm_virtual_network.hr[0].name
  address_prefixes     = ["10.42.1.0/24"]
  delegation {
    name = "flex"
    service_delegation {
      name    = "Microsoft.App/environments"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

resource "azurerm_subnet" "endpoints" {
  count                             = local.private ? 1 : 0
  name                              = "private-endpoints"
  resource_group_name               = data.azurerm_resource_group.hr.name
  virtual_network_name              = azurerm_virtual_network.hr[0].name
  address_prefixes                  = ["10.42.2.0/24"]
  private_endpoint_network_policies = "Enabled"
}

resource "azurerm_subnet_network_security_group_association" "function" {
  count                     = local.private ? 1 : 0
  subnet_id                 = azurerm_subnet.function[0].id
  network_security_group_id = azurerm_network_security_group.hr[0].id
}

resource "azurerm_subnet_network_security_group_association" "endpoints" {
  count                     = local.private ? 1 : 0
  subnet_id                 = azurerm_subnet.endpoints[0].id
  network_security_group_id = azurerm_network_security_group.hr[0].id
}

locals {
  dns_zones = local.private ? {
    blob  = local.cloud_environment == "public" ? "privatelink.blob.core.windows.net" : "privatelink.blob.core.usgovcloudapi.net"
    queue = local.cloud_environment == "public" ? "privatelink.queue.core.windows.net" : "privatelink.queue.core.usgovcloudapi.net"
    vault = local.cloud_environment == "public" ? "privatelink.vaultcore.azure.net" : "privatelink.vaultcore.usgovcloudapi.net"
  } : {}
  # Private endpoints: the HR account's blob and queue services, and the vault.
  endpoints = local.private ? {
    blob  = azurerm_storage_account.hr.id
    queue = azurerm_storage_account.hr.id
    vault = azurerm_key_vault.hr.id
  } : {}
}

resource "azurerm_private_dns_zone" "hr" {
  for_each            = local.dns_zones
  name                = each.value
  resource_group_name = data.azurerm_resource_group.hr.name
  tags                = local.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "hr" {
  for_each              = local.dns_zones
  name                  = "link-${each.key}"
  resource_group_name   = data.azurerm_resource_group.hr.name
  private_dns_zone_name = azurerm_private_dns_zone.hr[each.key].name
  virtual_network_id    = azurerm_virtual_network.hr[0].id
  registration_enabled  = false
  tags                  = local.tags
}

resource "azurerm_private_endpoint" "hr" {
  for_each            = local.endpoints
  name                = "pe-hr-${each.key}-${local.suffix}"
  resource_group_name = data.azurerm_resource_group.hr.name
  location            = var.location
  subnet_id           = azurerm_subnet.endpoints[0].id
  tags                = local.tags
  private_service_connection {
    name                           = each.key
    private_connection_resource_id = each.value
    subresource_names              = [each.key]
    is_manual_connection           = false
  }
  private_dns_zone_group {
    name                 = "default"
    private_dns_zone_ids = [azurerm_private_dns_zone.hr[each.key].id]
  }
}

# -- storage ---------------------------------------------------------------------------------------
# HR data: the files as they arrive, processed, rejected rows, reports, state.
resource "azurerm_storage_account" "hr" {
  #checkov:skip=CKV_AZURE_206:zone-redundant (ZRS) on purpose: geo-replication would copy HR data to a second region
  #checkov:skip=CKV_AZURE_59:public network access is a parameter (enable_private_networking); in public mode only Entra ID callers with a role get in
  #checkov:skip=CKV_AZURE_35:the network rule denies only with enable_private_networking (Flex has no fixed outbound IPs)
  #checkov:skip=CKV_AZURE_33:no queue logging: the only queue is the blob trigger's poison queue, which holds no HR data
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys with infrastructure encryption; customer-managed keys are an organisation's choice, not a default
  #checkov:skip=CKV2_AZURE_33:private endpoints are created with enable_private_networking
  #checkov:skip=CKV2_AZURE_21:blob read logging is a diagnostic setting an organisation routes to its own workspace
  name                              = substr("sthr${local.suffix}", 0, 24)
  resource_group_name               = data.azurerm_resource_group.hr.name
  location                          = var.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = "ZRS"
  shared_access_key_enabled         = false # identity only: no account keys, no SAS signed with them
  default_to_oauth_authentication   = true
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  cross_tenant_replication_enabled  = false
  infrastructure_encryption_enabled = true
  queue_encryption_key_type         = "Account"
  table_encryption_key_type         = "Account"
  public_network_access_enabled     = !local.private
  tags                              = local.tags

  network_rules {
    default_action = local.private ? "Deny" : "Allow"
    bypass         = ["AzureServices"] # Event Grid (system topic) and Azure Monitor as trusted services
  }

  blob_properties {
    versioning_enabled = true
    delete_retention_policy {
      days = 14
    }
    container_delete_retention_policy {
      days = 14
    }
  }
}

resource "azurerm_storage_container" "hr" {
  #checkov:skip=CKV2_AZURE_21:blob read logging is a diagnostic setting an organisation routes to its own workspace
  for_each              = local.containers
  name                  = each.value
  storage_account_id    = azurerm_storage_account.hr.id
  container_access_type = "private"
}

resource "azurerm_storage_management_policy" "hr" {
  storage_account_id = azurerm_storage_account.hr.id

  rule {
    name    = "hr-retention"
    enabled = true
    filters {
      blob_types   = ["blockBlob"]
      prefix_match = ["${local.containers.processed}/", "${local.containers.reports}/", "${local.containers.dead_letter}/"]
    }
    actions {
      base_blob {
        delete_after_days_since_modification_greater_than = var.retention_days
      }
      version {
        delete_after_days_since_creation = 30
      }
    }
  }

  rule {
    name    = "old-versions"
    enabled = true
    filters {
      blob_types = ["blockBlob"]
    }
    actions {
      version {
        delete_after_days_since_creation = 30
      }
    }
  }
}

# The Functions host's own storage and the deployment package; no HR data.
resource "azurerm_storage_account" "host" {
  #checkov:skip=CKV_AZURE_206:zone-redundant (ZRS); holds only host state and the code package
  #checkov:skip=CKV_AZURE_59:the deployer (azd, CI) uploads the package from outside; access needs Entra ID and a role
  #checkov:skip=CKV_AZURE_35:the deployer uploads the package from outside; access needs Entra ID and a role
  #checkov:skip=CKV_AZURE_33:no queues are used in the host account
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys with infrastructure encryption; no HR data here
  #checkov:skip=CKV2_AZURE_33:no HR data; reachable with Entra ID only
  #checkov:skip=CKV2_AZURE_21:no HR data to audit reads of
  name                              = substr("stfn${local.suffix}", 0, 24)
  resource_group_name               = data.azurerm_resource_group.hr.name
  location                          = var.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = "ZRS"
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  cross_tenant_replication_enabled  = false
  infrastructure_encryption_enabled = true
  queue_encryption_key_type         = "Account"
  table_encryption_key_type         = "Account"
  tags                              = local.tags

  network_rules {
    default_action = "Allow"
    bypass         = ["AzureServices"]
  }

  blob_properties {
    versioning_enabled = true
    delete_retention_policy {
      days = 14
    }
    container_delete_retention_policy {
      days = 14
    }
  }
}

resource "azurerm_storage_container" "package" {
  #checkov:skip=CKV2_AZURE_21:no HR data to audit reads of
  name                  = "app-package"
  storage_account_id    = azurerm_storage_account.host.id
  container_access_type = "private"
}

# -- Key Vault -------------------------------------------------------------------------------------
resource "azurerm_key_vault" "hr" {
  #checkov:skip=CKV_AZURE_109:public network access is a parameter (enable_private_networking); in public mode only principals with an RBAC role get in
  #checkov:skip=CKV_AZURE_189:public network access is a parameter (enable_private_networking); RBAC guards the vault
  #checkov:skip=CKV2_AZURE_32:private endpoint created with enable_private_networking
  name                          = local.key_vault_name
  resource_group_name           = data.azurerm_resource_group.hr.name
  location                      = var.location
  tenant_id                     = data.azurerm_subscription.current.tenant_id
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = !local.private
  tags                          = local.tags

  network_acls {
    default_action = local.private ? "Deny" : "Allow"
    bypass         = "AzureServices"
  }
}

# -- monitoring ------------------------------------------------------------------------------------
resource "azurerm_log_analytics_workspace" "hr" {
  name                         = "log-hr-${var.environment_name}-${local.suffix}"
  resource_group_name          = data.azurerm_resource_group.hr.name
  location                     = var.location
  sku                          = "PerGB2018"
  retention_in_days            = 90
  local_authentication_enabled = false
  tags                         = local.tags
}

resource "azurerm_application_insights" "hr" {
  name                          = "appi-hr-${var.environment_name}-${local.suffix}"
  resource_group_name           = data.azurerm_resource_group.hr.name
  location                      = var.location
  application_type              = "web"
  workspace_id                  = azurerm_log_analytics_workspace.hr.id
  local_authentication_disabled = true # telemetry only with Entra ID (Monitoring Metrics Publisher)
  tags                          = local.tags
}

resource "azurerm_monitor_action_group" "hr" {
  count               = var.alert_email != "" ? 1 : 0
  name                = "ag-hr-${var.environment_name}"
  resource_group_name = data.azurerm_resource_group.hr.name
  short_name          = "hrconnector"
  tags                = local.tags

  email_receiver {
    name                    = "admin"
    email_address           = var.alert_email
    use_common_alert_schema = true
  }
}

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "hr" {
  for_each             = local.alerts
  name                 = "${each.key}-${var.environment_name}"
  resource_group_name  = data.azurerm_resource_group.hr.name
  location             = var.location
  display_name         = each.key
  description          = each.value.description
  severity             = each.value.severity
  scopes               = [azurerm_application_insights.hr.id]
  evaluation_frequency = each.value.frequency
  window_duration      = each.value.window
  tags                 = local.tags

  criteria {
    query                   = each.value.query
    time_aggregation_method = "Count"
    operator                = each.value.operator
    threshold               = each.value.threshold
    failing_periods {
      number_of_evaluation_periods             = 1
      minimum_failing_periods_to_trigger_alert = 1
    }
  }

  dynamic "action" {
    for_each = azurerm_monitor_action_group.hr
    content {
      action_groups = [action.value.id]
    }
  }
}

# -- the Function ------------------------------------------------------------------------------------
resource "azurerm_service_plan" "hr" {
  #checkov:skip=CKV_AZURE_225:a batch workload: a zone outage delays files (Event Grid retries, the timer sweeps), loses none
  #checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero; files wait safely in storage
  name                = "plan-${local.function_name}"
  resource_group_name = data.azurerm_resource_group.hr.name
  location            = var.location
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = local.tags
}

# The deployment package: azd and Core Tools hand it to the publish API with the deployer's own
# Azure sign-in; the platform writes it to the container as this identity (Blob Data Owner on the
# host account), so the deployer needs no storage role.
# Flex Consumption sets the runtime itself: FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION
# and WEBSITE_RUN_FROM_PACKAGE are deliberately absent.
resource "azurerm_function_app_flex_consumption" "hr" {
  name                                           = local.function_name
  resource_group_name                            = data.azurerm_resource_group.hr.name
  location                                       = var.location
  service_plan_id                                = azurerm_service_plan.hr.id
  runtime_name                                   = "python"
  runtime_version                                = var.python_version
  maximum_instance_count                         = var.maximum_instance_count
  instance_memory_in_mb                          = var.instance_memory_mb
  storage_container_type                         = "blobContainer"
  storage_container_endpoint                     = "${azurerm_storage_account.host.primary_blob_endpoint}${azurerm_storage_container.package.name}"
  storage_authentication_type                    = "UserAssignedIdentity"
  storage_user_assigned_identity_id              = azurerm_user_assigned_identity.function.id
  https_only                                     = true
  public_network_access_enabled                  = true
  client_certificate_enabled                     = false # Event Grid presents no client certificate
  webdeploy_publish_basic_authentication_enabled = false
  virtual_network_subnet_id                      = local.private ? azurerm_subnet.function[0].id : null
  app_settings                                   = local.app_settings
  tags                                           = merge(local.tags, { "azd-service-name" = "hr-function" })

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.function.id]
  }

  site_config {
    minimum_tls_version                    = "1.2"
    http2_enabled                          = true
    application_insights_connection_string = azurerm_application_insights.hr.connection_string
  }
}

# -- permissions of the Function's identity: each the narrowest built-in role at the narrowest scope --
# HR storage, blobs: the blob trigger's identity-based connection requires Storage Blob Data Owner
# (as documented for the trigger); the code reads, writes, leases and deletes blobs in the HR containers.
resource "azurerm_role_assignment" "hr_blobs" {
  scope                = azurerm_storage_account.hr.id
  role_definition_name = local.role.blob_data_owner
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
}

# HR storage, queues: the blob trigger keeps its poison queue in the trigger's account.
resource "azurerm_role_assignment" "hr_queues" {
  scope                = azurerm_storage_account.hr.id
  role_definition_name = local.role.queue_data_contributor
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
}

# Host storage (AzureWebJobsStorage, no HR data): the roles the Functions docs list for an
# identity-based host connection with a blob trigger. Blob Data Owner: host keys, timer schedule
# monitor, singleton locks, blob receipts and the Flex deployment package. Queue Data Contributor: the
# blob extension's Event Grid webhook writes every event to the azure-webjobs-blobtrigger-<host id>
# queue in this account before the function runs (without it every delivery fails with 403).
# Storage Account Contributor: listed by the docs for the blob trigger on this connection. Table Data
# Contributor: the host's diagnostic events (AzureWebJobsStorage__tableServiceUri).
resource "azurerm_role_assignment" "host_blobs" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = local.role.blob_data_owner
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "host_queues" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = local.role.queue_data_contributor
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "host_tables" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = local.role.table_data_contributor
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "host_account" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = local.role.storage_account_contributor
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
}

# Key Vault: read the app's secret (or certificate, read through its secret); read-only, this vault only.
resource "azurerm_role_assignment" "vault_secrets" {
  scope                = azurerm_key_vault.hr.id
  role_definition_name = local.role.key_vault_secrets_user
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
}

# Application Insights with local auth off accepts telemetry only from principals with this role.
resource "azurerm_role_assignment" "telemetry" {
  scope                = azurerm_application_insights.hr.id
  role_definition_name = local.role.monitoring_metrics_publisher
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
}

# -- Event Grid: blob-created events of the HR account to the blob extension's webhook -------------
resource "azurerm_eventgrid_system_topic" "hr" {
  name                = "evgt-hr-${var.environment_name}-${local.suffix}"
  resource_group_name = data.azurerm_resource_group.hr.name
  location            = var.location
  source_resource_id  = azurerm_storage_account.hr.id
  topic_type          = "Microsoft.Storage.StorageAccounts"
  tags                = local.tags

  identity {
    type = "SystemAssigned"
  }
}

# Event Grid writes undeliverable events to the dead-letter container, and nowhere else.
resource "azurerm_role_assignment" "dead_letter_writer" {
  scope                = azurerm_storage_container.hr["dead_letter"].id
  role_definition_name = local.role.blob_data_contributor
  principal_id         = azurerm_eventgrid_system_topic.hr.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}

# The webhook's key exists once the code is deployed, hence subscribe_events (set it in
# terraform.tfvars: a -var on the command line is undone by the next plain apply). This data source
# puts the host keys (master, default, blobs_extension) in the state, and the subscription's webhook
# URL carries the blobs_extension key: protect the state (docs/deploy.md).
data "azurerm_function_app_host_keys" "hr" {
  count               = var.subscribe_events ? 1 : 0
  name                = azurerm_function_app_flex_consumption.hr.name
  resource_group_name = data.azurerm_resource_group.hr.name

  lifecycle {
    # The provider returns "" rather than an error while the key does not exist yet; without this
    # the subscription would get a webhook URL with an empty code and Event Grid's handshake fails.
    postcondition {
      condition     = self.blobs_extension_key != ""
      error_message = "The Function has no blobs_extension key yet: deploy the code (func azure functionapp publish), wait until the host has started (a few minutes), then apply again with subscribe_events = true."
    }
  }
}

resource "azurerm_eventgrid_system_topic_event_subscription" "hr" {
  count                 = var.subscribe_events ? 1 : 0
  name                  = "hr-incoming-csv"
  system_topic          = azurerm_eventgrid_system_topic.hr.name
  resource_group_name   = data.azurerm_resource_group.hr.name
  event_delivery_schema = "EventGridSchema"
  included_event_types  = ["Microsoft.Storage.BlobCreated"]

  webhook_endpoint {
    url                  = "https://${azurerm_function_app_flex_consumption.hr.default_hostname}/runtime/webhooks/blobs?functionName=Host.Functions.hr_file_arrived&code=${data.azurerm_function_app_host_keys.hr[0].blobs_extension_key}"
    max_events_per_batch = 1
  }

  subject_filter {
    subject_begins_with = "/blobServices/default/containers/${local.containers.incoming}/"
    case_sensitive      = false
  }

  # CSV files and Excel workbooks (advanced string filters compare without case)
  advanced_filter {
    string_ends_with {
      key    = "subject"
      values = [".csv", ".xlsx"]
    }
  }

  retry_policy {
    max_delivery_attempts = 30
    event_time_to_live    = 1440
  }

  dead_letter_identity {
    type = "SystemAssigned"
  }

  storage_blob_dead_letter_destination {
    storage_account_id          = azurerm_storage_account.hr.id
    storage_blob_container_name = local.containers.dead_letter
  }

  depends_on = [azurerm_role_assignment.dead_letter_writer]
}

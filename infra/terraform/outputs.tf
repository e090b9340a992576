output "AZURE_FUNCTION_NAME" {
  description = "Name of the Function app (azd deploys the code to it)."
  value       = azurerm_function_app_flex_consumption.hr.name
}

output "AZURE_RESOURCE_GROUP" {
  description = "Resource group (azd)."
  value       = data.azurerm_resource_group.hr.name
}

output "HR_STORAGE_ACCOUNT" {
  description = "HR storage account: drop files in its hr-incoming container."
  value       = azurerm_storage_account.hr.name
}

output "KEY_VAULT_NAME" {
  description = "Key Vault to put the app secret in."
  value       = azurerm_key_vault.hr.name
}

output "FEDERATED_CREDENTIAL" {
  description = "For a federated credential on the app: issuer, subject (the identity) and audience. The issuer is the identity's tenant (the subscription's), whatever tenant_id is: the app registration must be in that tenant."
  value = {
    issuer   = "${local.cloud_environment == "public" ? "https://login.microsoftonline.com" : "https://login.microsoftonline.us"}/${data.azurerm_subscription.current.tenant_id}/v2.0"
    subject  = azurerm_user_assigned_identity.function.principal_id
    audience = local.token_exchange_audience
  }
}

output "AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID" {
  description = "Object (principal) id of the Function's managed identity: the service principal that gets the Microsoft Graph permission Sites.Selected (docs/deploy.md)."
  value       = azurerm_user_assigned_identity.function.principal_id
}

output "AZURE_FUNCTION_IDENTITY_CLIENT_ID" {
  description = "Client (application) id of the Function's managed identity: the application a SharePoint site permission names (docs/deploy.md)."
  value       = azurerm_user_assigned_identity.function.client_id
}

# The HR connector Function: identity only, least privilege. The same system as infra/bicep; the
# app setting names are those of hrconnector_core/settings.py (tests/test_infra.py checks both).
terraform {
  required_version = ">= 1.9, < 2.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # Exactly the version whose schema tests/test_infra_schema.py checks every argument against
      # (>= 4.42 is needed anyway: rbac_authorization_enabled on the vault).
      version = "= 4.55.0"
    }
  }
}

provider "azurerm" {
  features {
    key_vault {
      purge_soft_delete_on_destroy    = false # purge protection is on: never purge HR secrets on destroy
      recover_soft_deleted_key_vaults = true  # a redeploy within 90 days of a teardown takes the old vault back
    }
    storage {
      # With enable_private_networking the HR account refuses public traffic, and azurerm 4.x would
      # read its data plane (queue properties, static website) during plan: 403 from outside the
      # VNet (hashicorp/terraform-provider-azurerm#27818). Nothing here uses those blocks, and the
      # containers are managed through ARM (storage_account_id), so the data plane is never needed.
      data_plane_available = false
    }
  }
  # azurerm 4.x needs the subscription: this variable, or ARM_SUBSCRIPTION_ID when it is null.
  subscription_id     = var.subscription_id
  storage_use_azuread = true # shared keys are off: the provider manages containers with Entra ID
  environment         = local.cloud_environment
}

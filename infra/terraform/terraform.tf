# The HR connector Function: identity only, least privilege. The same system as infra/bicep; the
# app setting names are those of hrconnector_core/settings.py (tests/test_infra.py checks both).
terraform {
  required_version = ">= 1.9, < 2.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.40"
    }
  }
}

provider "azurerm" {
  features {
    key_vault {
      purge_soft_delete_on_destroy = false # purge protection is on: never purge HR secrets on destroy
    }
  }
  storage_use_azuread = true # shared keys are off: the provider manages containers with Entra ID
  environment         = local.cloud_environment
}

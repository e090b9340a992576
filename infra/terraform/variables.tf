variable "environment_name" {
  type        = string
  description = "Short name of this environment; part of every resource name."
  validation {
    condition     = can(regex("^[a-z0-9]{2,12}$", var.environment_name))
    error_message = "2-12 lower-case letters and digits."
  }
}

variable "subscription_id" {
  type        = string
  description = "Subscription to deploy into; null: the ARM_SUBSCRIPTION_ID environment variable (azurerm 4.x needs one of them)."
  default     = null
}

variable "resource_group_name" {
  type        = string
  description = "Existing resource group to deploy into."
}

variable "location" {
  type        = string
  description = "Azure region of every resource. Flex Consumption must be available there."
}

variable "python_version" {
  type        = string
  description = "Python version of the Function (the version CI tests)."
  default     = "3.11"
  validation {
    condition     = contains(["3.11"], var.python_version)
    error_message = "The code is tested on Python 3.11."
  }
}

variable "cloud" {
  type        = string
  description = "Microsoft cloud of the HR connector: commercial, gcc, gcchigh or dod."
  default     = "commercial"
  validation {
    condition     = contains(["commercial", "gcc", "gcchigh", "dod"], var.cloud)
    error_message = "One of commercial, gcc, gcchigh, dod."
  }
}

variable "tenant_id" {
  type        = string
  description = "Entra tenant the HR connector (Purview) is in: the app signs in there. Empty: the subscription's tenant."
  default     = ""
}

variable "app_id" {
  type        = string
  description = "Client (app) id of the Entra app registered for the HR connector."
  validation {
    condition     = can(regex("^[0-9a-fA-F-]{36}$", var.app_id))
    error_message = "An app (client) id is a GUID."
  }
}

variable "connectors" {
  # any, not map(map(any)): a connector holds strings, numbers and a `mapping` object side by side
  # (docs/function.md), which no single element type can hold. jsonencode() writes it as given.
  type        = any
  description = "The connectors, as the HR_CONNECTORS app setting: { <folder> = { job_id = \"<job id>\", mapping = { ... }, ... } }. A connector may take its files from a SharePoint or OneDrive folder: source_site (e.g. contoso.sharepoint.com/sites/HR), source_library (default Documents), source_folder (default the library's root), source_move (default true), source_copy_existing (default false); the site needs a grant (docs/deploy.md). See docs/function.md."
  validation {
    # try(): a value that is not a map of objects fails the validation instead of erroring.
    condition = try(length(var.connectors) > 0 && alltrue([
      for c in values(var.connectors) : can(regex("^[0-9a-fA-F-]{36}$", c.job_id))
    ]), false)
    error_message = "At least one connector (folder = { ... }), each with a job_id that is a GUID."
  }
  validation {
    # An absent field is fine (the code's default). == compares without converting: "true" is no bool.
    condition = try(alltrue([
      for c in values(var.connectors) : alltrue([
        !can(c.source_site) || can(regex("^(https://)?[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+(/[^?#]*)?$", c.source_site)),
        !can(c.source_library) || try(tostring(c.source_library) == c.source_library && c.source_library != "", false),
        !can(c.source_folder) || try(tostring(c.source_folder) == c.source_folder, false),
        !can(c.source_move) || try(c.source_move == true || c.source_move == false, false),
        !can(c.source_copy_existing) || try(c.source_copy_existing == true || c.source_copy_existing == false, false),
      ])
    ]), false)
    error_message = "A connector's SharePoint/OneDrive source: source_site is a site such as contoso.sharepoint.com/sites/HR, source_library a non-empty name, source_folder a path, source_move and source_copy_existing true or false."
  }
}

variable "credential" {
  type        = string
  description = "How the app signs in: key-vault-secret, key-vault-certificate, or federated (no secret)."
  default     = "key-vault-secret"
  validation {
    condition     = contains(["key-vault-secret", "key-vault-certificate", "federated"], var.credential)
    error_message = "One of key-vault-secret, key-vault-certificate, federated."
  }
}

variable "secret_name" {
  type        = string
  description = "Name of the Key Vault secret (or certificate) holding the app credential. The value is put in the vault after deployment, never in Terraform state."
  default     = "hr-connector-app-secret"
}

variable "schedule" {
  type        = string
  description = "NCRONTAB schedule of the timer (UTC): sweep, profile refresh, retention."
  default     = "0 */15 * * * *"
}

variable "source_schedule" {
  type        = string
  description = "NCRONTAB schedule (UTC) of the SharePoint/OneDrive source timer: how often each connector with a source_site asks Microsoft Graph for new files in its folder."
  default     = "0 */5 * * * *"
}

variable "records_per_call" {
  type        = number
  description = "Records per upload call."
  default     = 5000
  validation {
    condition     = var.records_per_call >= 1 && var.records_per_call <= 100000
    error_message = "Between 1 and 100000."
  }
}

variable "policy" {
  type        = string
  description = "upload-valid (set invalid rows aside) or reject-file (upload nothing when a row is invalid)."
  default     = "upload-valid"
  validation {
    condition     = contains(["upload-valid", "reject-file"], var.policy)
    error_message = "upload-valid or reject-file."
  }
}

variable "retention_days" {
  type        = number
  description = "Days processed files, reports and state are kept (the code and a lifecycle rule both apply it)."
  default     = 90
  validation {
    condition     = var.retention_days >= 1 && var.retention_days <= 3650
    error_message = "Between 1 and 3650."
  }
}

variable "profile_refresh_days" {
  type        = number
  description = "Days after which the latest employee-profile file is uploaded again (profiles expire after 30)."
  default     = 14
  validation {
    condition     = var.profile_refresh_days >= 1 && var.profile_refresh_days <= 29
    error_message = "Between 1 and 29."
  }
}

variable "expected_every_hours" {
  type        = number
  description = "A file is expected from the HR system at least this often (hours); the timer alerts (hr-export-overdue) when the last is older. 0: no check. A connector in `connectors` may set its own expected_every_hours."
  default     = 0
  validation {
    condition     = var.expected_every_hours >= 0 && var.expected_every_hours <= 8760
    error_message = "Between 0 (no check) and 8760 hours."
  }
}

variable "enable_private_networking" {
  type        = bool
  description = "Private endpoints for the HR storage account and Key Vault, and VNet integration of the Function."
  default     = false
}

variable "subscribe_events" {
  type        = bool
  description = "Create the Event Grid subscription. Needs the deployed code (its blobs_extension key): false on the first apply, true after the code is deployed."
  default     = false
}

variable "key_vault_name" {
  type        = string
  description = "Key Vault name (3-24 characters); empty: kv-hr-<unique suffix>. A deleted vault keeps its name for 90 days (purge protection): the provider recovers it on the next apply, or choose another name here."
  default     = ""
  validation {
    condition     = length(var.key_vault_name) <= 24
    error_message = "At most 24 characters."
  }
}

variable "maximum_instance_count" {
  type        = number
  description = "Most instances Flex Consumption scales out to."
  default     = 40
  validation {
    condition     = var.maximum_instance_count >= 1 && var.maximum_instance_count <= 1000
    error_message = "Between 1 and 1000."
  }
}

variable "instance_memory_mb" {
  type        = number
  description = "Memory of each instance (MB)."
  default     = 2048
  validation {
    condition     = contains([512, 2048, 4096], var.instance_memory_mb)
    error_message = "512, 2048 or 4096."
  }
}

variable "alert_email" {
  type        = string
  description = "E-mail address for the alerts; empty: alerts without notification."
  default     = ""
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource."
  default     = {}
}

variable "project_id" {
  description = "The project coalmine and the released service run in."
  type        = string
}

variable "region" {
  description = "The region of coalmine's functions and of the released service."
  type        = string
}

variable "image" {
  description = "The functions image by digest, from the first Cloud Build run; null on the first apply."
  type        = string
  default     = null
}

variable "policy_file" {
  description = "The path of the coalmine policy file (docs/policy.md)."
  type        = string
}

variable "target_services" {
  description = "The Cloud Run services the policy releases."
  type        = list(string)
}

variable "target_service_accounts" {
  description = "The service accounts those services run as."
  type        = list(string)
}

variable "release_repositories" {
  description = "The Artifact Registry repositories of the released images."
  type = list(object({
    location   = string
    repository = string
  }))
}

variable "backup_bucket" {
  description = "The bucket to create for backups (the policy's backup.target.bucket)."
  type        = string
}

variable "backup_source_buckets" {
  description = "The buckets the backups copy (the policy's backup.storage.sources)."
  type        = list(string)
  default     = []
}

variable "cloudsql_instances" {
  description = "Cloud SQL connection names (PROJECT:REGION:INSTANCE) the Backup function dumps."
  type        = list(string)
  default     = []
}

variable "cloudsql_service_accounts" {
  description = "The service accounts of the Cloud SQL instances the cloudsql driver exports from."
  type        = list(string)
  default     = []
}

variable "backup_secret_env" {
  description = "The Backup function's environment from Secret Manager: variable name => secret ID."
  type        = map(string)
  default     = {}
}

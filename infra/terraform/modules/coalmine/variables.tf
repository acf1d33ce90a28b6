variable "project_id" {
  description = "The project coalmine runs in: its topics, functions, service accounts and backup bucket, and the Cloud Run services it releases (they must be in this project)."
  type        = string
}

variable "region" {
  description = "The region of coalmine's functions, its image repository and, unless scheduler_location says otherwise, its Cloud Scheduler jobs. The released services' region is the policy's."
  type        = string
}

variable "scheduler_location" {
  description = "The Cloud Scheduler location of the sweep job and the per-rollout tick jobs (COALMINE_SCHEDULER_LOCATION). Null means region."
  type        = string
  default     = null
}

variable "image" {
  description = "The functions image by digest (REGION-docker.pkg.dev/PROJECT/coalmine/functions@sha256:...), as Cloud Build prints it. Null creates everything but the functions and their push subscriptions: the first apply, before the first build. Later builds deploy new images themselves; a changed value here is ignored."
  type        = string
  default     = null
}

variable "policy" {
  description = "The coalmine policy (YAML, docs/policy.md). It is stored as a Secret Manager secret version and mounted into every function at /etc/coalmine/policy.yaml; a change makes new revisions of the functions."
  type        = string
}

variable "create_gcr_topic" {
  description = "Whether to create the gcr topic Artifact Registry publishes to. Set false when the project already has it."
  type        = bool
  default     = true
}

variable "target_services" {
  description = "The Cloud Run services coalmine releases (the policy's services), in region target_region. Every function may read and update them; the functions that run rollback hooks may invoke them."
  type        = list(string)
}

variable "target_region" {
  description = "The region of target_services. Null means region."
  type        = string
  default     = null
}

variable "target_service_accounts" {
  description = "The runtime service accounts (emails) of target_services. Updating a service's traffic or template needs iam.serviceAccounts.actAs on the account it runs as."
  type        = list(string)
}

variable "release_repositories" {
  description = "The Artifact Registry repositories ({location, repository}) of the released images: the Backup function checks that a released image is there."
  type = list(object({
    location   = string
    repository = string
  }))
}

variable "backup_bucket" {
  description = "The name of the bucket coalmine creates for backups (the policy's backup.target.bucket)."
  type        = string
}

variable "backup_bucket_location" {
  description = "The location of the backup bucket. Null means region."
  type        = string
  default     = null
}

variable "backup_retention_days" {
  description = "Days a deleted or replaced object of the backup bucket can still be restored (the bucket's soft delete policy): 7 to 90."
  type        = number
  default     = 30
  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 90
    error_message = "backup_retention_days must be 7 to 90 (Cloud Storage's soft delete limits)."
  }
}

variable "backup_source_buckets" {
  description = "The buckets the policy's backups copy from (backup.storage.sources): the Backup function reads them."
  type        = list(string)
  default     = []
}

variable "cloudsql_instances" {
  description = "Cloud SQL instance connection names (PROJECT:REGION:INSTANCE) the Backup function dumps: mounted at /cloudsql for the postgres driver's pg_dump, and exported from by the cloudsql driver."
  type        = list(string)
  default     = []
}

variable "cloudsql_service_accounts" {
  description = "The service accounts of the Cloud SQL instances the cloudsql driver exports from (the instance, not coalmine, writes the export): they may create objects in the backup bucket."
  type        = list(string)
  default     = []
}

variable "backup_secret_env" {
  description = "Environment variables of the Backup function read from Secret Manager: name => secret ID in project_id, e.g. { DATABASE_URL = \"ai-square-database-url\" } for the postgres driver's urlEnv."
  type        = map(string)
  default     = {}
}

variable "max_instances" {
  description = "The most instances of each function."
  type        = number
  default     = 5
}

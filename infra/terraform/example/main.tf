# An example root: coalmine for one service on one project. Copy
# terraform.tfvars.example to terraform.tfvars, fill it in, then follow
# docs/production.md.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

module "coalmine" {
  source = "../modules/coalmine"

  project_id                = var.project_id
  region                    = var.region
  image                     = var.image
  policy                    = file(var.policy_file)
  target_services           = var.target_services
  target_service_accounts   = var.target_service_accounts
  release_repositories      = var.release_repositories
  backup_bucket             = var.backup_bucket
  backup_source_buckets     = var.backup_source_buckets
  cloudsql_instances        = var.cloudsql_instances
  cloudsql_service_accounts = var.cloudsql_service_accounts
  backup_secret_env         = var.backup_secret_env
}

output "coalmine" {
  description = "What the next steps of docs/production.md need."
  value = {
    image_repository = module.coalmine.image_repository
    deployer         = module.coalmine.deployer
    build_staging    = module.coalmine.build_staging
    function_urls    = module.coalmine.function_urls
    backup_bucket    = module.coalmine.backup_bucket
  }
}
